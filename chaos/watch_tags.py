#!/usr/bin/env python3
"""Watch tags at registries; append each change to a file.

    watch_tags.py OUT STOP_FILE INTERVAL_S NAME=URL...

Every INTERVAL_S each URL (a manifest URL, .../v2/REPO/manifests/TAG) is
asked with HEAD; whenever the Docker-Content-Digest it answers differs from
the last one seen for that NAME, the line "NAME DIGEST" is appended to OUT
(and flushed). A missing tag (404) or an error is not a change. Runs until
STOP_FILE exists or for at most 30 minutes. Stdlib only; one keep-alive
connection per registry.
"""
import http.client
import os
import sys
import time
import urllib.parse

ACCEPT = ", ".join([
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
])


def main():
    out, stop, interval = sys.argv[1], sys.argv[2], float(sys.argv[3])
    targets = []
    for arg in sys.argv[4:]:
        name, url = arg.split("=", 1)
        u = urllib.parse.urlsplit(url)
        targets.append((name, u.netloc, u.path))
    conns = {}
    last = {}
    deadline = time.time() + 1800
    with open(out, "a") as f:
        while time.time() < deadline and not os.path.exists(stop):
            for name, netloc, path in targets:
                try:
                    c = conns.get(netloc)
                    if c is None:
                        c = conns[netloc] = http.client.HTTPConnection(netloc, timeout=2)
                    c.request("HEAD", path, headers={"Accept": ACCEPT})
                    r = c.getresponse()
                    r.read()
                    digest = r.getheader("Docker-Content-Digest")
                    if r.status == 200 and digest and digest != last.get(name):
                        last[name] = digest
                        f.write(f"{name} {digest}\n")
                        f.flush()
                except (OSError, http.client.HTTPException):
                    conns.pop(netloc, None)
            time.sleep(interval)


if __name__ == "__main__":
    main()
