#!/usr/bin/env python3
"""Check acknowledged webhook events against the journal, one by one, by id.

    ingest_load_check.py JOURNAL_LS_JSON [--load RUN_ID:EVENTS_PER_REQUEST:ACKED_FILE]...
                         [--client PREFIX:ACKED_FILE]...

JOURNAL_LS_JSON is `ferry journal ls --json` (one object per line; "-" reads
stdin). The acknowledged events come from two kinds of clients:

  --load     tests/tools/ingest_load --acked-file: one line "CLIENT REQUEST" per
             request answered 200; its events are RUN_ID-CLIENT-REQUEST-K for
             K < EVENTS_PER_REQUEST. A client sends its requests one at a time
             (REQUEST counts up), so the file lists each client's requests in
             the order they were acknowledged.
  --client   chaos/webhook_client.py: every acknowledged id, PREFIX-THREAD-BATCH-I,
             one per line; a thread posts its batches one at a time.

Checked:
  - the journal's seqs: strictly increasing in the listing and consecutive
    from the first to the last (journal_append gives each appended event the
    next seq; nothing deletes entries here), so no seq twice and no gap;
  - every acknowledged event is in the journal, and exactly once (no id of a
    watched client is journaled twice, acknowledged or not);
  - acknowledgement order: when a client had request A acknowledged before it
    sent request B, every event of A has a lower seq than every event of B,
    and the events of one request are journaled in their order in it.

Memory stays small at millions of events: a watched id's seq is kept in a
flat array per (client kind, client), indexed by REQUEST * E + K, not in a
dict of strings. Prints one JSON line of counts, the first few violations on
stderr, and exits 1 on any violation (2 on bad input).
"""
import array
import json
import sys

MAX_REPORT = 10


class Clients:
    """The seqs of one kind of client's events: slots[client][request * per + k]."""

    def __init__(self, prefix, per):
        self.prefix = prefix + "-"
        self.per = per
        self.slots = {}
        self.journaled = 0
        self.duplicates = 0

    def record(self, client, request, k, seq):
        if k >= self.per:
            return False
        a = self.slots.get(client)
        if a is None:
            a = self.slots[client] = array.array("Q")
        i = request * self.per + k
        if i >= len(a):
            a.extend(array.array("Q", [0]) * max(i + 1 - len(a), len(a), 1024))
        if a[i] != 0:
            self.duplicates += 1
            return True
        a[i] = seq
        self.journaled += 1
        return True

    def seq(self, client, request, k):
        a = self.slots.get(client)
        i = request * self.per + k
        if a is None or i >= len(a):
            return 0
        return a[i]


def parse_id_tail(rest):
    """'C-R-K' -> (C, R, K) as ints, or None."""
    parts = rest.split("-")
    if len(parts) != 3:
        return None
    try:
        return int(parts[0]), int(parts[1]), int(parts[2])
    except ValueError:
        return None


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    journal_path = argv[1]
    loads, clients = [], []
    i = 2
    while i < len(argv):
        flag = argv[i]
        if i + 1 >= len(argv):
            print(f"ingest_load_check: {flag} wants a value", file=sys.stderr)
            return 2
        value = argv[i + 1]
        i += 2
        if flag == "--load":
            run_id, per, path = value.split(":", 2)
            loads.append((Clients(run_id, int(per)), path))
        elif flag == "--client":
            prefix, path = value.split(":", 1)
            clients.append((Clients(prefix, 10), path))
        else:
            print(f"ingest_load_check: unknown flag {flag}", file=sys.stderr)
            return 2
    kinds = [c for c, _ in loads] + [c for c, _ in clients]

    problems = []

    def problem(text):
        if len(problems) < MAX_REPORT:
            print("ingest_load_check: " + text, file=sys.stderr)
        problems.append(1)

    entries = 0
    first = last = 0
    not_increasing = gaps = 0
    unwatched = 0
    src = sys.stdin if journal_path == "-" else open(journal_path)
    with src:
        for line in src:
            if not line.strip():
                continue
            e = json.loads(line)
            seq = int(e["seq"])
            entries += 1
            if entries == 1:
                first = seq
            elif seq <= last:
                not_increasing += 1
                problem(f"seq {seq} listed after seq {last}")
            elif seq != last + 1:
                gaps += 1
                problem(f"seqs {last + 1}..{seq - 1} are missing (a gap)")
            last = max(last, seq)
            eid = e.get("event_id") or ""
            for kind in kinds:
                if eid.startswith(kind.prefix):
                    t = parse_id_tail(eid[len(kind.prefix):])
                    if t is not None and kind.record(t[0], t[1], t[2], seq):
                        break
            else:
                unwatched += 1

    duplicates = sum(k.duplicates for k in kinds)
    if duplicates:
        problem(f"{duplicates} events of the watched clients are journaled twice")

    acked = missing = out_of_order = 0

    def check_request(kind, client, request, prev_max):
        """Check one acknowledged request; returns the highest seq of its events."""
        nonlocal acked, missing, out_of_order
        top = prev_max
        for k in range(kind.per):
            acked += 1
            s = kind.seq(client, request, k)
            if s == 0:
                missing += 1
                problem(f"acknowledged event {kind.prefix}{client}-{request}-{k} is not in the journal")
                continue
            if s <= top:
                out_of_order += 1
                problem(f"event {kind.prefix}{client}-{request}-{k} has seq {s}, not after seq {top} "
                        f"of an event its client had acknowledged before")
            top = max(top, s)
        return top

    for kind, path in loads:
        prev = {}
        with open(path) as f:
            for line in f:
                if not line.strip():
                    continue
                c, r = (int(x) for x in line.split())
                prev[c] = check_request(kind, c, r, prev.get(c, 0))
    for kind, path in clients:
        # The ids come one per line, a batch's ids together in order; group them back.
        prev = {}
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                t = parse_id_tail(line[len(kind.prefix):]) if line.startswith(kind.prefix) else None
                if t is None:
                    problem(f"acknowledged id {line!r} is not {kind.prefix}THREAD-BATCH-I")
                    continue
                thread, batch, k = t
                if k != 0:
                    continue
                prev[thread] = check_request(kind, thread, batch, prev.get(thread, 0))

    result = {
        "entries": entries, "first_seq": first, "last_seq": last,
        "seqs_not_increasing": not_increasing, "seq_gaps": gaps,
        "acked": acked, "missing": missing, "duplicates": duplicates,
        "out_of_ack_order": out_of_order, "other_entries": unwatched,
    }
    for kind, _ in loads:
        result["load_journaled"] = result.get("load_journaled", 0) + kind.journaled
    for kind, _ in clients:
        result["client_journaled"] = result.get("client_journaled", 0) + kind.journaled
    print(json.dumps(result))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
