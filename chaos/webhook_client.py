#!/usr/bin/env python3
"""Post generic webhook events the way a registry delivers them: at least once.

    webhook_client.py PORT SOURCE ACKED_FILE SECONDS THREADS PREFIX

THREADS threads each post batches of 10 push events with unique ids
(PREFIX-THREAD-BATCH-I) for SECONDS; a batch that gets no 200 (the daemon was
killed, refused the connection, answered 503) is posted again with the same
ids until it is acknowledged, as a registry's notification retries do. Every
acknowledged id is appended to ACKED_FILE. After SECONDS no new batch starts;
unacknowledged ones are retried for at most 30 s more. Prints one JSON line:
batches, acked events, retries, unacked batches left.
"""
import hashlib
import http.client
import json
import sys
import threading
import time


def main():
    port, source, acked_path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    seconds, threads, prefix = float(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
    stop_new = time.time() + seconds
    give_up = stop_new + 30
    lock = threading.Lock()
    totals = {"batches": 0, "acked": 0, "retries": 0, "unacked": 0}
    acked_file = open(acked_path, "a")

    def post(conn, body):
        conn.request("POST", "/v1/events/" + source, body, {"Content-Type": "application/json"})
        r = conn.getresponse()
        r.read()
        return r.status

    def worker(t):
        conn = None
        b = 0
        while time.time() < stop_new:
            ids = [f"{prefix}-{t}-{b}-{i}" for i in range(10)]
            b += 1
            events = [{"id": i, "action": "push", "repository": "chaos/journal",
                       "digest": "sha256:" + hashlib.sha256(i.encode()).hexdigest(), "tag": "t"}
                      for i in ids]
            body = json.dumps({"events": events})
            tries = 0
            ok = False
            while time.time() < give_up:
                tries += 1
                try:
                    if conn is None:
                        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                    if post(conn, body) == 200:
                        with lock:
                            acked_file.write("\n".join(ids) + "\n")
                            acked_file.flush()
                            totals["acked"] += len(ids)
                        ok = True
                        break
                except (OSError, http.client.HTTPException):
                    if conn is not None:
                        conn.close()
                    conn = None
                time.sleep(0.05)
            with lock:
                totals["batches"] += 1
                totals["retries"] += tries - 1
                if not ok:
                    totals["unacked"] += 1

    ts = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for th in ts:
        th.start()
    for th in ts:
        th.join()
    acked_file.close()
    print(json.dumps(totals))


if __name__ == "__main__":
    main()
