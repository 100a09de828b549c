#!/usr/bin/env python3
"""scalegen.py: a large source registry, written straight into the storage
layout of CNCF Distribution's filesystem driver, for tests/bench/scale.sh.

Pushing 100,000 tags through the API takes hours; writing the files takes a
minute. The layout (Distribution's docs/storage-drivers and
registry/storage/paths.go) is stable since 2.0:

  docker/registry/v2/blobs/sha256/<hex[:2]>/<hex>/data        the bytes
  docker/registry/v2/repositories/<name>/
      _layers/sha256/<hex>/link                    "sha256:<hex>": a blob the repository holds
      _manifests/revisions/sha256/<hex>/link       a manifest the repository holds
      _manifests/tags/<tag>/current/link           what the tag names now
      _manifests/tags/<tag>/index/sha256/<hex>/link  what it ever named

Blobs and manifests are shared between repositories (a repository links
them), so the tree stays small: IMAGES distinct images (each its own config
blob over one of LAYERS small layers), tag t of repository r naming image
(r * TAGS + t) % IMAGES.

  scalegen.py ROOT REPOS TAGS [IMAGES] [LAYERS]

prints one line: repositories, tags, images and the files it wrote.
"""
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def sha(data):
    return hashlib.sha256(data).hexdigest()


def layer_bytes(n):
    """A small, valid, reproducible gzipped tar holding one file."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        body = ("ferry scale layer %d\n" % n).encode()
        info = tarfile.TarInfo("scale/layer-%d.txt" % n)
        info.size = len(body)
        info.mtime = 0
        tar.addfile(info, io.BytesIO(body))
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz:
        gz.write(raw.getvalue())
    return raw.getvalue(), out.getvalue()


class Writer:
    def __init__(self, root):
        self.v2 = os.path.join(root, "docker", "registry", "v2")
        self.files = 0

    def write(self, path, data):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        self.files += 1

    def blob(self, data):
        hexd = sha(data)
        self.write(os.path.join(self.v2, "blobs", "sha256", hexd[:2], hexd, "data"), data)
        return hexd

    def link(self, path, hexd):
        self.write(os.path.join(path, "link"), b"sha256:" + hexd.encode())


def main(argv):
    if len(argv) < 4:
        sys.exit(__doc__.strip().splitlines()[-3].strip())
    root = argv[1]
    repos, tags = int(argv[2]), int(argv[3])
    images = int(argv[4]) if len(argv) > 4 else 1000
    n_layers = int(argv[5]) if len(argv) > 5 else 4
    if repos < 1 or tags < 1 or images < 1 or n_layers < 1:
        sys.exit("scalegen.py: REPOS, TAGS, IMAGES and LAYERS are positive")
    w = Writer(root)

    layers = []
    for n in range(n_layers):
        tar, tgz = layer_bytes(n)
        layers.append((w.blob(tgz), len(tgz), "sha256:" + sha(tar)))

    manifests = []  # (hex, size, config hex, layer hex)
    for i in range(images):
        lhex, lsize, diff_id = layers[i % n_layers]
        config = json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "config": {"Labels": {"dev.ferry.scale.image": str(i)}},
                "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            },
            sort_keys=True,
            separators=(",", ":"),
        ).encode()
        chex = w.blob(config)
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": "sha256:" + chex, "size": len(config)},
                "layers": [{"mediaType": OCI_LAYER, "digest": "sha256:" + lhex, "size": lsize}],
            },
            indent=2,
        ).encode()
        manifests.append((w.blob(manifest), chex, lhex))

    repo_root = os.path.join(w.v2, "repositories")
    width = len(str(repos - 1))
    for r in range(repos):
        name = "scale/r%0*d" % (width, r)
        rdir = os.path.join(repo_root, name)
        linked = set()
        for t in range(tags):
            mhex, chex, lhex = manifests[(r * tags + t) % images]
            for bhex in (chex, lhex):
                if bhex not in linked:
                    w.link(os.path.join(rdir, "_layers", "sha256", bhex), bhex)
                    linked.add(bhex)
            if mhex not in linked:
                w.link(os.path.join(rdir, "_manifests", "revisions", "sha256", mhex), mhex)
                linked.add(mhex)
            tdir = os.path.join(rdir, "_manifests", "tags", "t%d" % t)
            w.link(os.path.join(tdir, "current"), mhex)
            w.link(os.path.join(tdir, "index", "sha256", mhex), mhex)
    print(
        "scalegen: %d repositories, %d tags, %d images, %d files under %s"
        % (repos, repos * tags, min(images, repos * tags), w.files, root)
    )


if __name__ == "__main__":
    main(sys.argv)
