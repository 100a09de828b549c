#!/usr/bin/env python3
"""The fleet benches' helper (tests/bench/fleet.sh, tests/bench/cluster.sh,
through fleetlib.sh's `tool`); needs FERRY_FIXTURES_DIR (tests/fixtures) for
fixturegen.

    push-repo --registry ADDR --repo R --tags N [--index-every K]
        push one repository of the fleet (fixturegen's own code with the fleet's
        layer layout); one fixturegen JSON line per tag on stdout
    logstats --log FILE [--offset N] FLEET.jsonl...
        figures of the requests a registry logged past line N (JSON)
    verify --addr ADDR FLEET.jsonl...
        every fleet tag at ADDR has the source's digest (exit 1 if not)
    latency ... / latsplit PER_TAG JOURNAL
        fleet.sh's push-to-replicated latency: pusher and watcher, and its split
    notify --url URL [--url URL]... [--token T] [--prefix P] FLEET.jsonl...
        post one Distribution notification envelope per fleet image, as a
        registry sends for a push, to the URLs in turn (one thread per URL)
    status-wait --url API [--url API]... --dest D [--dest D]... --until completed:N|backlog:N|inflight:N
        poll the nodes' /v1/status until their figures add up to N; JSON
    tarpit --port-file F --log F
        a registry that answers GET /v2/ and nothing else: every other request
        is held open, unanswered, and logged ("unix_time METHOD PATH")
"""
import argparse, http.client, json, math, os, queue, re, sys, threading, time

sys.path.insert(0, os.environ["FERRY_FIXTURES_DIR"])
import fixturegen as fg  # noqa: E402

ACCEPT = ", ".join([fg.MT_OCI_MANIFEST, fg.MT_OCI_INDEX, fg.MT_DOCKER_MANIFEST, fg.MT_DOCKER_LIST])
MiB = 1 << 20
FLEET_BASE = [20 * MiB, 8 * MiB, 3 * MiB]
REPO_LAYER = 4 * MiB
TAG_LAYER = 512 * 1024

# -- push-repo -------------------------------------------------------------
_LAYERS = {}


class FleetPlan(fg.Plan):
    """fixturegen's Plan with the fleet layout: 3 fleet base layers of
    different sizes and a per-repository layer (platform-independent, before
    the tag's own layers), then --layers own layers seeded by --seed."""

    def _layer(self, seed_text, file_name, size):
        key = (seed_text, file_name, size)
        blob = _LAYERS.get(key)
        if blob is None:  # hashed once per process, not once per tag
            blob = fg.Blob(fg.MT_OCI_LAYER, fg.tar_layer_producer(seed_text, file_name, size),
                           note=seed_text)
            _LAYERS[key] = blob
        return self._add_blob(blob)

    def _image(self, plat):
        if not getattr(self, "_fleet", False):
            self._fleet = True
            self.base = [self._layer("ferry-bench-fleet/v1/base/%d" % i, "fleet/base-%d.bin" % i, s)
                         for i, s in enumerate(FLEET_BASE)]
            self.base.append(self._layer("ferry-bench-fleet/v1/repo/%s" % self.args.repo,
                                         "fleet/repo.bin", REPO_LAYER))
        return super()._image(plat)


def cmd_push_repo(a):
    fg.Plan = FleetPlan
    for t in range(1, a.tags + 1):
        tag = "v%d" % t
        plats = "linux/amd64,linux/arm64" if t % a.index_every == 0 else "linux/amd64"
        rc = fg.main(["push", "--registry", a.registry, "--repo", a.repo, "--tag", tag,
                      "--seed", "%s/%s" % (a.repo, tag), "--layers", "1",
                      "--layer-size", str(TAG_LAYER), "--platforms", plats, "--compact"])
        sys.stdout.flush()
        if rc:
            return rc
    return 0


# -- logstats ---------------------------------------------------------------
LINE = re.compile(r'^\S+ - \S+ \[[^\]]+\] "([A-Z]+) (\S+) HTTP/[0-9.]+" (\d{3}) (\d+|-) "[^"]*" "([^"]*)"$')
BLOB = re.compile(r"^/v2/(.+)/blobs/(sha256:[0-9a-f]{64})$")
DIGEST_Q = re.compile(r"[?&]digest=(sha256(?::|%3[aA])[0-9a-f]{64})")


def emit(obj):
    """One line of JSON on stdout."""
    json.dump(obj, sys.stdout)
    sys.stdout.write("\n")


def fleet_images(paths):
    """fixturegen's JSON lines in the files `paths`: one dict per image."""
    for path in paths:
        with open(path) as f:
            for line in f:
                if line.strip():
                    yield json.loads(line)


def cmd_logstats(a):
    sizes = {}
    for img in fleet_images(a.fleet):
        for b in img["blobs"]:
            sizes[b["digest"]] = b["size"]
    out = {"requests": 0, "blob_gets": 0, "blob_get_bytes": 0, "uploads": 0, "upload_bytes": 0,
           "unknown_uploads": 0, "mounts": 0, "manifest_puts": 0, "heads": 0, "errors_5xx": 0,
           "errors_4xx_put": 0, "dup_uploads": 0, "dup_upload_bytes": 0}
    seen = set()
    with open(a.log, errors="replace") as f:
        for n, line in enumerate(f):
            if n < a.offset:
                continue
            m = LINE.match(line.rstrip("\n"))
            if not m or m.group(5) == "ferry-itest-probe":
                continue
            method, uri, status, nbytes = m.group(1), m.group(2), int(m.group(3)), m.group(4)
            path = uri.split("?", 1)[0]
            out["requests"] += 1
            if status >= 500:
                out["errors_5xx"] += 1
            if method == "HEAD":
                out["heads"] += 1
            if method in ("PUT", "POST", "PATCH") and 400 <= status < 500:
                out["errors_4xx_put"] += 1
            if method == "GET" and status in (200, 206) and BLOB.match(path):
                out["blob_gets"] += 1
                out["blob_get_bytes"] += 0 if nbytes == "-" else int(nbytes)
            elif method in ("PUT", "POST") and status == 201 and "/blobs/uploads/" in path:
                if "mount=" in uri and "digest=" not in uri:
                    out["mounts"] += 1
                    continue
                d = DIGEST_Q.search(uri)
                if d:
                    digest = d.group(1).replace("%3A", ":").replace("%3a", ":")
                    out["uploads"] += 1
                    if digest in seen:
                        out["dup_uploads"] += 1
                        out["dup_upload_bytes"] += sizes.get(digest, 0)
                    seen.add(digest)
                    if digest in sizes:
                        out["upload_bytes"] += sizes[digest]
                    else:
                        out["unknown_uploads"] += 1
                else:
                    out["mounts"] += 1
            elif method == "PUT" and status == 201 and "/manifests/" in path:
                out["manifest_puts"] += 1
    emit(out)
    return 0


# -- verify -----------------------------------------------------------------
def cmd_verify(a):
    want = {}
    for doc in fleet_images(a.fleet):
        want.setdefault(doc["repository"], {})[doc["tag"]] = doc["digest"]
    host = a.addr
    conn = http.client.HTTPConnection(host, timeout=30)
    bad = []
    ok = 0

    def req(method, path, headers=None):
        nonlocal conn
        for attempt in range(3):
            try:
                conn.request(method, path, headers=dict(headers or {}, **{"User-Agent": "ferry-bench-verify"}))
                r = conn.getresponse()
                return r.status, r.headers, r.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection(host, timeout=30)
                if attempt == 2:
                    raise

    for repo in sorted(want):
        st, _, body = req("GET", "/v2/%s/tags/list" % repo)
        listed = set(json.loads(body).get("tags") or []) if st == 200 else set()
        for tag, digest in sorted(want[repo].items()):
            if tag not in listed:
                bad.append("%s:%s not listed (tags/list %d)" % (repo, tag, st))
                continue
            st2, h, _ = req("HEAD", "/v2/%s/manifests/%s" % (repo, tag), {"Accept": ACCEPT})
            got = h.get("Docker-Content-Digest") if st2 == 200 else "HTTP-%d" % st2
            if got != digest:
                bad.append("%s:%s has %s, source has %s" % (repo, tag, got, digest))
            else:
                ok += 1
    total = sum(len(t) for t in want.values())
    print(json.dumps({"ok": ok, "total": total, "repos": len(want), "bad": bad[:20], "nbad": len(bad)}))
    return 0 if not bad else 1


# -- latency ----------------------------------------------------------------
def cmd_latency(a):
    layer_size = 16 * 1024
    n = int(a.rate * a.seconds)
    t0 = time.time() + 1.0
    jobs = queue.Queue()
    done = {}      # tag -> (scheduled, started, completed)
    errors = []
    lock = threading.Lock()

    def push_one(reg, i):
        tag = "p%05d" % i
        layer = fg.Blob(fg.MT_OCI_LAYER,
                        fg.tar_layer_producer("ferry-bench-latency/%s/%s" % (a.repo, tag), "f.bin", layer_size))
        cfg = {"architecture": "amd64", "os": "linux", "created": fg.EPOCH,
               "rootfs": {"type": "layers", "diff_ids": [layer.digest]}}
        config = fg.Blob.from_bytes(fg.MT_OCI_CONFIG, json.dumps(cfg, sort_keys=True).encode())
        manifest = fg.canonical_json({"schemaVersion": 2, "mediaType": fg.MT_OCI_MANIFEST,
                                      "config": config.descriptor(), "layers": [layer.descriptor()]})
        reg.push_blob(layer, fg.DEFAULT_CHUNK)
        reg.push_blob(config, fg.DEFAULT_CHUNK)
        reg.put_manifest(tag, fg.MT_OCI_MANIFEST, manifest)
        return tag

    def worker():
        reg = fg.Registry(a.src, a.repo, timeout=30)
        while True:
            item = jobs.get()
            if item is None:
                return
            i, sched = item
            start = time.time()
            try:
                tag = push_one(reg, i)
                end = time.time()
                with lock:
                    done[tag] = (sched, start, end)
            except Exception as e:  # noqa: BLE001 - reported, not fatal
                with lock:
                    errors.append("push %d: %s" % (i, e))
                reg = fg.Registry(a.src, a.repo, timeout=30)

    visible = {}
    stop_watch = threading.Event()
    polls = [0]

    def watcher():
        conn = http.client.HTTPConnection(a.dst, timeout=10)
        while not stop_watch.is_set():
            ts = time.time()
            try:
                conn.request("GET", "/v2/%s/tags/list" % a.repo, headers={"User-Agent": "ferry-bench-watch"})
                r = conn.getresponse()
                body = r.read()
                tr = time.time()
                polls[0] += 1
                if r.status == 200:
                    for t in json.loads(body).get("tags") or []:
                        if t not in visible:
                            visible[t] = tr
            except (OSError, http.client.HTTPException, ValueError):
                conn.close()
                conn = http.client.HTTPConnection(a.dst, timeout=10)
            left = ts + a.poll - time.time()
            if left > 0:
                time.sleep(left)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(a.pushers)]
    for t in threads:
        t.start()
    w = threading.Thread(target=watcher, daemon=True)
    w.start()
    for i in range(n):
        sched = t0 + i / a.rate
        d = sched - time.time()
        if d > 0:
            time.sleep(d)
        jobs.put((i, sched))
    for _ in threads:
        jobs.put(None)
    for t in threads:
        t.join()
    push_end = time.time()
    deadline = push_end + a.drain
    while time.time() < deadline:
        with lock:
            pending = [t for t in done if t not in visible]
        if not pending:
            break
        time.sleep(0.1)
    stop_watch.set()
    w.join()

    lat = sorted((visible[t] - done[t][2]) * 1000 for t in done if t in visible)
    lags = sorted((done[t][1] - done[t][0]) * 1000 for t in done)
    push_ms = sorted((done[t][2] - done[t][1]) * 1000 for t in done)

    first = min((v[0] for v in done.values()), default=t0)
    last = max((v[2] for v in done.values()), default=t0)
    out = {"target_rate": a.rate, "seconds": a.seconds, "scheduled": n, "pushed": len(done),
           "push_errors": len(errors), "errors": errors[:5],
           "achieved_rate": len(done) / (last - first) if last > first else 0.0,
           "start_lag_p50_ms": pct(lags, 50), "start_lag_p99_ms": pct(lags, 99),
           "start_lag_max_ms": lags[-1] if lags else None,
           "push_p50_ms": pct(push_ms, 50), "push_p99_ms": pct(push_ms, 99),
           "visible": len(lat), "missing": len(done) - len(lat),
           "p50_ms": pct(lat, 50), "p90_ms": pct(lat, 90), "p99_ms": pct(lat, 99),
           "max_ms": lat[-1] if lat else None, "min_ms": lat[0] if lat else None,
           "polls": polls[0],
           # p50 per 10 s of pushes: flat = jitter, growing = a backlog
           "p50_by_10s_ms": [pct([(visible[t] - v[2]) * 1000 for t, v in done.items()
                                  if t in visible and w <= v[0] - t0 < w + 10], 50)
                             for w in range(0, int(math.ceil(a.seconds)), 10)]}
    if a.per_tag:
        with open(a.per_tag, "w") as f:
            json.dump({t: list(v) + [visible.get(t)] for t, v in done.items()}, f)
    emit(out)
    return 0


def pct(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    k = min(len(xs) - 1, max(0, math.ceil(p / 100.0 * len(xs)) - 1))  # nearest rank
    return xs[k]


def cmd_latsplit(a):
    """Split push-to-replicated into push -> journaled (the registry's
    notification reaching ferry, received_at) and journaled -> visible."""
    import calendar
    with open(a.per_tag) as f:
        per = json.load(f)
    recv = {}
    with open(a.journal) as f:
        for line in f:
            if not line.strip():
                continue
            e = json.loads(line)
            if e.get("tag") is None or e["tag"] in recv:
                continue
            ts = e["received_at"]  # 2026-11-26T17:22:43.094Z
            secs = calendar.timegm(time.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S"))
            recv[e["tag"]] = secs + int(ts[20:23]) / 1000.0
    notify, repl = [], []
    for tag, (sched, start, end, vis) in per.items():
        if tag in recv:
            notify.append((recv[tag] - end) * 1000)
            if vis is not None:
                repl.append((vis - recv[tag]) * 1000)
    out = {"journaled": len(recv), "notify_p50_ms": pct(notify, 50), "notify_p99_ms": pct(notify, 99),
           "notify_max_ms": max(notify) if notify else None,
           "replicate_p50_ms": pct(repl, 50), "replicate_p99_ms": pct(repl, 99),
           "replicate_max_ms": max(repl) if repl else None}
    emit(out)
    return 0


# -- notify -----------------------------------------------------------------
def cmd_notify(a):
    """One envelope per image, as Distribution sends for a manifest push, to
    the URLs in turn (image i to URL i mod n); one keep-alive connection and
    thread per URL. Every post must be answered 200."""
    import urllib.parse
    images = list(fleet_images(a.fleet))
    queues = [[] for _ in a.url]
    for i, img in enumerate(images):
        ev = {"id": "%s-%s-%s" % (a.prefix, img["repository"], img["tag"]),
              "timestamp": "2026-12-05T10:00:00Z", "action": "push",
              "target": {"mediaType": img["media_type"], "digest": img["digest"], "size": img["size"],
                         "length": img["size"], "repository": img["repository"], "tag": img["tag"]},
              "request": {"id": "r-%d" % i, "addr": "127.0.0.1", "host": "src", "method": "PUT",
                          "useragent": "ferry-bench"},
              "source": {"addr": "src:5000"}}
        queues[i % len(a.url)].append(json.dumps({"events": [ev]}).encode())
    errors = []
    posted = [0] * len(a.url)

    def poster(k):
        u = urllib.parse.urlsplit(a.url[k])
        conn = http.client.HTTPConnection(u.netloc, timeout=60)
        headers = {"Content-Type": "application/vnd.docker.distribution.events.v1+json",
                   "User-Agent": "ferry-bench-notify"}
        if a.token:
            headers["Authorization"] = "Bearer " + a.token
        for body in queues[k]:
            try:
                conn.request("POST", u.path, body=body, headers=headers)
                r = conn.getresponse()
                answer = r.read()
            except (OSError, http.client.HTTPException) as e:
                errors.append("%s: %s" % (a.url[k], e))
                return
            if r.status != 200:
                errors.append("%s: HTTP %d %s" % (a.url[k], r.status, answer[:200]))
                return
            posted[k] += 1
        conn.close()

    t0 = time.time()
    threads = [threading.Thread(target=poster, args=(k,)) for k in range(len(a.url))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    emit({"images": len(images), "posted": sum(posted), "per_url": posted,
               "seconds": time.time() - t0, "errors": errors[:5]})
    return 0 if not errors and sum(posted) == len(images) else 1


# -- tarpit -----------------------------------------------------------------
def cmd_tarpit(a):
    """Answers GET /v2/ (so that a client's ping succeeds) and holds every
    other request open without an answer, reading and dropping whatever the
    client sends; logs "unix_time METHOD PATH" per request."""
    import asyncio
    log = open(a.log, "a", buffering=1)

    async def handle(reader, writer):
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    chunk = await reader.read(65536)
                    if not chunk:
                        return
                    buf += chunk
                    if len(buf) > 1 << 20:
                        return
                head, buf = buf.split(b"\r\n\r\n", 1)
                parts = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
                method, path = (parts + ["", ""])[:2]
                log.write("%.6f %s %s\n" % (time.time(), method, path))
                if method == "GET" and path.split("?")[0] in ("/v2/", "/v2"):
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                 b"Docker-Distribution-API-Version: registry/2.0\r\n"
                                 b"Content-Length: 2\r\n\r\n{}")
                    await writer.drain()
                    continue
                while await reader.read(65536):  # held: read and drop until the client goes
                    pass
                return
        except (ConnectionError, OSError):
            return
        finally:
            writer.close()

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        with open(a.port_file + ".tmp", "w") as f:
            f.write("%d\n" % server.sockets[0].getsockname()[1])
        os.replace(a.port_file + ".tmp", a.port_file)
        async with server:
            await server.serve_forever()

    asyncio.run(main())
    return 0


# -- status-wait ------------------------------------------------------------
def cmd_status_wait(a):
    """Polls every node's GET /v1/status (--url: a node's API) every --every
    seconds until the sum over the nodes meets --until:
      completed:N  for every --dest: completed jobs >= N, and no backlog there
      backlog:N    backlog (queued, waiting or running jobs) at --dest >= N
      inflight:N   running jobs at --dest >= N
    Prints one JSON line: at (unix time of the first answer that met it),
    first_change_at (of the first whose sum differed from the first poll's),
    polls, errors, and each node's last figures per destination; exit 1 when
    --timeout seconds pass first."""
    kind, want = a.until.split(":")
    want = int(want)
    metric = {"completed": "completed", "backlog": "backlog", "inflight": "in_flight"}[kind]
    conns = {}
    last = {u: {} for u in a.url}
    polls = errors = 0
    first_sum = None
    first_change = None
    deadline = time.time() + a.timeout

    def status(url):
        import urllib.parse
        u = urllib.parse.urlsplit(url)
        for attempt in (0, 1):
            conn = conns.get(url) or http.client.HTTPConnection(u.netloc, timeout=5)
            conns[url] = conn
            try:
                conn.request("GET", "/v1/status", headers={"User-Agent": "ferry-bench-status"})
                r = conn.getresponse()
                body = r.read()
                if r.status == 200:
                    return json.loads(body)
            except (OSError, http.client.HTTPException, ValueError):
                pass
            conn.close()
            conns.pop(url, None)
        return None

    while True:
        t = time.time()
        polls += 1
        ok = True
        for url in a.url:
            st = status(url)
            if st is None:
                errors += 1
                ok = False
                continue
            for d in st.get("destinations", []):
                if d["name"] in a.dest:
                    last[url][d["name"]] = {k: d.get(k) for k in
                                            ("completed", "backlog", "in_flight", "failed_total", "retries")}
        if ok:
            sums = {d: sum(last[u].get(d, {}).get(metric) or 0 for u in a.url) for d in a.dest}
            backlog = {d: sum(last[u].get(d, {}).get("backlog") or 0 for u in a.url) for d in a.dest}
            key = tuple(sorted(sums.items()))
            if first_sum is None:
                first_sum = key
            elif first_change is None and key != first_sum:
                first_change = t
            if kind == "completed":
                met = all(sums[d] >= want and backlog[d] == 0 for d in a.dest)
            else:
                met = sums[a.dest[0]] >= want
            if met:
                emit({"at": t, "first_change_at": first_change, "polls": polls, "errors": errors,
                           "nodes": [{"url": u, "dests": last[u]} for u in a.url]})
                return 0
        if time.time() > deadline:
            emit({"at": None, "polls": polls, "errors": errors,
                       "nodes": [{"url": u, "dests": last[u]} for u in a.url]})
            return 1
        left = t + a.every - time.time()
        if left > 0:
            time.sleep(left)


def main():
    p = argparse.ArgumentParser(prog="fleettool.py")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("push-repo")
    s.add_argument("--registry", required=True)
    s.add_argument("--repo", required=True)
    s.add_argument("--tags", type=int, required=True)
    s.add_argument("--index-every", type=int, default=5)
    s = sub.add_parser("logstats")
    s.add_argument("--log", required=True)
    s.add_argument("--offset", type=int, default=0)
    s.add_argument("fleet", nargs="*")
    s = sub.add_parser("verify")
    s.add_argument("--addr", required=True)
    s.add_argument("fleet", nargs="+")
    s = sub.add_parser("latency")
    s.add_argument("--src", required=True)
    s.add_argument("--dst", required=True)
    s.add_argument("--repo", default="lat")
    s.add_argument("--rate", type=float, default=20)
    s.add_argument("--seconds", type=float, default=60)
    s.add_argument("--pushers", type=int, default=8)
    s.add_argument("--poll", type=float, default=0.02)
    s.add_argument("--drain", type=float, default=30)
    s.add_argument("--per-tag", help="write {tag: [scheduled, started, completed, visible]} here")
    s = sub.add_parser("latsplit")
    s.add_argument("per_tag")
    s.add_argument("journal")
    s = sub.add_parser("notify")
    s.add_argument("--url", action="append", required=True)
    s.add_argument("--token")
    s.add_argument("--prefix", default="bench")
    s.add_argument("fleet", nargs="+")
    s = sub.add_parser("status-wait")
    s.add_argument("--url", action="append", required=True)
    s.add_argument("--dest", action="append", required=True)
    s.add_argument("--until", required=True, help="completed:N, backlog:N or inflight:N")
    s.add_argument("--every", type=float, default=0.1)
    s.add_argument("--timeout", type=float, default=600)
    s = sub.add_parser("tarpit")
    s.add_argument("--port-file", required=True)
    s.add_argument("--log", required=True)
    a = p.parse_args()
    return {"push-repo": cmd_push_repo, "logstats": cmd_logstats, "verify": cmd_verify,
            "latency": cmd_latency, "latsplit": cmd_latsplit, "notify": cmd_notify,
            "status-wait": cmd_status_wait, "tarpit": cmd_tarpit}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
