#!/usr/bin/env python3
"""Watch tags at registries; append each change to a file.

    watch_tags.py OUT STOP_FILE INTERVAL_S NAME=URL...
    watch_tags.py --arrivals PUSHED OUT STOP_FILE INTERVAL_S NAME=REGISTRY_URL...

Every INTERVAL_S each URL (a manifest URL, .../v2/REPO/manifests/TAG) is
asked with HEAD; whenever the Docker-Content-Digest it answers differs from
the last one seen for that NAME, the line "NAME DIGEST" is appended to OUT
(and flushed). A missing tag (404) or an error is not a change. Runs until
STOP_FILE exists or for at most 30 minutes. Stdlib only; one keep-alive
connection per registry.

With --arrivals, the tags to watch come from PUSHED, a file a pusher appends
"REPO TAG PUSHED_AT" to (PUSHED_AT: Unix time in seconds, when the push to the
source returned); each is asked with HEAD at every REGISTRY_URL
(http://HOST:PORT/v2/REPO/manifests/TAG) until it answers 200, and then
"NAME REPO TAG PUSHED_AT SEEN_AT LAG_S" is appended to OUT: the lag of that
destination measured from outside Ferry. Pending tags are asked every
INTERVAL_S, each destination on its own connection.
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


def arrivals(argv):
    pushed_path, out, stop, interval = argv[0], argv[1], argv[2], float(argv[3])
    dests = []
    for arg in argv[4:]:
        name, url = arg.split("=", 1)
        dests.append((name, urllib.parse.urlsplit(url).netloc))
    conns = {}
    pending = []  # [name, netloc, repo, tag, pushed_at]
    offset = 0
    deadline = time.time() + 1800
    with open(out, "a") as f:
        while time.time() < deadline and not os.path.exists(stop):
            try:
                with open(pushed_path) as p:
                    p.seek(offset)
                    chunk = p.read()
            except FileNotFoundError:
                chunk = ""
            # Only whole lines: the pusher may be mid-write.
            whole = chunk[:chunk.rfind("\n") + 1]
            offset += len(whole.encode())
            for line in whole.splitlines():
                repo, tag, at = line.split()
                for name, netloc in dests:
                    pending.append([name, netloc, repo, tag, float(at)])
            still = []
            for item in pending:
                name, netloc, repo, tag, at = item
                try:
                    c = conns.get(name)
                    if c is None:
                        c = conns[name] = http.client.HTTPConnection(netloc, timeout=2)
                    c.request("HEAD", f"/v2/{repo}/manifests/{tag}", headers={"Accept": ACCEPT})
                    r = c.getresponse()
                    r.read()
                    if r.status == 200:
                        seen = time.time()
                        f.write(f"{name} {repo} {tag} {at:.3f} {seen:.3f} {seen - at:.3f}\n")
                        f.flush()
                        continue
                except (OSError, http.client.HTTPException):
                    conns.pop(name, None)
                still.append(item)
            pending = still
            time.sleep(interval)


def main():
    if sys.argv[1] == "--arrivals":
        arrivals(sys.argv[2:])
        return
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
