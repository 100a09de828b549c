#!/usr/bin/env bash
# SIGHUP keeps what the daemon knows. Rules: `app` -> dst1 (a real registry),
# `gone/*` -> dst2 (a port where nothing listens, so its job keeps retrying).
# Three app images replicate (dst1 completed = 3), gone/x:v1 retries at dst2;
# then the config is rewritten without the `gone/*` rule (dst2 stays a
# destination of a rule that selects nothing pushed here) and SIGHUP reloads
# it. After the reload /v1/status and /metrics still count dst1's completions
# and dst2's retries (not reset to 0), the app jobs' records are still
# COMPLETE, and the gone/x job, which no rule selects now, ends SUPERSEDED
# with last_error saying "no rule selects" (not PENDING forever, not vanished).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require_ferry

registry_start src
registry_start dst1
down_port=$(free_port)
port=$(free_port)
API="http://127.0.0.1:$port"
write_config() { # RULE_LINE_FOR_DST2
  cat >"$TEST_TMP/ferry.yaml" <<YAML
data_dir: $TEST_TMP/data
listen: 127.0.0.1:$port
poll_interval: 500ms
retry: { attempts: 20, base: 1s, max: 3s }
circuit: { failures: 1000, open_for: 1s }
registries:
  src: { url: "http://$src_ADDR" }
  dst1: { url: "http://$dst1_ADDR" }
  dst2: { url: "http://127.0.0.1:$down_port" }
rules:
  - { name: app, source: src, repositories: ["app"], destinations: [{ registry: dst1 }] }
$1
YAML
}
write_config '  - { name: gone, source: src, repositories: ["gone/*"], destinations: [{ registry: dst2 }] }'

# The job status records, read-only from the journal (RocksDB column family
# "jobs", protobuf ferry.JobStatus), one JSON object per line.
cat >"$TEST_TMP/jobs.py" <<'PY'
import ctypes, json, sys

lib = ctypes.CDLL("librocksdb.so.7.8")
P, S = ctypes.c_void_p, ctypes.c_size_t
for name, res, args in [
    ("rocksdb_options_create", P, []),
    ("rocksdb_readoptions_create", P, []),
    ("rocksdb_list_column_families", ctypes.POINTER(ctypes.c_char_p),
     [P, ctypes.c_char_p, ctypes.POINTER(S), ctypes.POINTER(ctypes.c_char_p)]),
    ("rocksdb_open_for_read_only_column_families", P,
     [P, ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_char_p), ctypes.POINTER(P),
      ctypes.POINTER(P), ctypes.c_ubyte, ctypes.POINTER(ctypes.c_char_p)]),
    ("rocksdb_create_iterator_cf", P, [P, P, P]),
    ("rocksdb_iter_seek_to_first", None, [P]),
    ("rocksdb_iter_valid", ctypes.c_ubyte, [P]),
    ("rocksdb_iter_next", None, [P]),
    ("rocksdb_iter_value", ctypes.c_void_p, [P, ctypes.POINTER(S)]),
    ("rocksdb_iter_destroy", None, [P]),
    ("rocksdb_column_family_handle_destroy", None, [P]),
    ("rocksdb_close", None, [P]),
]:
    f = getattr(lib, name)
    f.restype, f.argtypes = res, args

def varint(b, i):
    v = s = 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << s
        s += 7
        if c < 0x80:
            return v, i

STATES = {0: "UNSPECIFIED", 1: "PENDING", 2: "IN_PROGRESS", 3: "COMPLETE", 4: "FAILED", 5: "SUPERSEDED"}
NAMES = {1: "destination", 2: "repository", 3: "digest", 4: "state", 5: "attempts", 6: "last_error",
         7: "bytes", 8: "seq", 9: "created_unix_ms", 10: "updated_unix_ms", 11: "completed_unix_ms"}

def decode(b):
    out, i = {"tags": [], "state": STATES[0], "last_error": "", "attempts": 0}, 0
    while i < len(b):
        key, i = varint(b, i)
        field, wt = key >> 3, key & 7
        if wt == 0:
            v, i = varint(b, i)
        elif wt == 2:
            n, i = varint(b, i)
            v = bytes(b[i:i + n]).decode("utf-8", "replace")
            i += n
        elif wt == 1:
            v, i = int.from_bytes(b[i:i + 8], "little"), i + 8
        elif wt == 5:
            v, i = int.from_bytes(b[i:i + 4], "little"), i + 4
        else:
            raise SystemExit("jobs.py: bad wire type %d" % wt)
        if field == 4:
            v = STATES.get(v, str(v))
        if field == 12:
            out["tags"].append(v)
        else:
            out[NAMES.get(field, "f%d" % field)] = v
    return out

path = sys.argv[1].encode()
opts = lib.rocksdb_options_create()
err = ctypes.c_char_p()
n = S()
names = lib.rocksdb_list_column_families(opts, path, ctypes.byref(n), ctypes.byref(err))
if err.value:
    raise SystemExit("jobs.py: " + err.value.decode())
cfs = [names[i] for i in range(n.value)]
if b"jobs" not in cfs:
    sys.exit(0)
arr = (ctypes.c_char_p * len(cfs))(*cfs)
cfopts = (P * len(cfs))(*([opts] * len(cfs)))
handles = (P * len(cfs))()
db = lib.rocksdb_open_for_read_only_column_families(opts, path, len(cfs), arr, cfopts, handles, 0,
                                                    ctypes.byref(err))
if err.value:
    raise SystemExit("jobs.py: " + err.value.decode())
it = lib.rocksdb_create_iterator_cf(db, lib.rocksdb_readoptions_create(), handles[cfs.index(b"jobs")])
lib.rocksdb_iter_seek_to_first(it)
while lib.rocksdb_iter_valid(it):
    ln = S()
    v = lib.rocksdb_iter_value(it, ctypes.byref(ln))
    print(json.dumps(decode(ctypes.string_at(v, ln.value))))
    lib.rocksdb_iter_next(it)
lib.rocksdb_iter_destroy(it)
for h in handles:
    lib.rocksdb_column_family_handle_destroy(h)
lib.rocksdb_close(db)
PY
jobs() { timeout 20 python3 "$TEST_TMP/jobs.py" "$TEST_TMP/data/journal"; }

ferry_serve_start ferry "$TEST_TMP/ferry.yaml" "$port"
st() { curl -sf --max-time 5 "$API/v1/status"; }
dest() { # NAME FIELD
  st | jq -r --arg n "$1" ".destinations[] | select(.name == \$n) | .$2"
}
metric() { # NAME{LABELS}
  curl -sf --max-time 5 "$API/metrics" | awk -v k="$1" '$1 == k { print $2 }'
}

N=3
for i in $(seq 1 $N); do
  fixturegen push --registry "$src_ADDR" --repo app --tag "v$i" --seed "keep$i" --layers 1 --layer-size 16K --compact >"$TEST_TMP/app$i.json"
done
completed_ge() { (($(dest dst1 completed || echo 0) >= $1)); }
wait_until 30 completed_ge $N || fail "dst1 completed $(dest dst1 completed) of $N app images: $(st)"
for i in $(seq 1 $N); do
  assert_eq "$(skopeo_raw "$dst1_ADDR/app:v$i" | digest_of)" "$(jq -r .digest "$TEST_TMP/app$i.json")" "app:v$i at dst1"
done

fixturegen push --registry "$src_ADDR" --repo gone/x --tag v1 --seed keepgone --layers 1 --layer-size 16K --compact >"$TEST_TMP/gone.json"
gone_digest=$(jq -r .digest "$TEST_TMP/gone.json")
retries_ge() { (($(dest dst2 retries || echo 0) >= $1)); }
wait_until 30 retries_ge 2 || fail "the gone/x job did not retry at dst2: $(st)"
gone_job() { jobs | jq -c --arg d "$gone_digest" 'select(.destination == "dst2" and .repository == "gone/x" and .digest == $d)'; }
before_job=$(gone_job)
[[ -n "$before_job" ]] || fail "no job record for gone/x at dst2: $(jobs)"
note "before the reload: gone/x job $before_job"

completed_before=$(dest dst1 completed)
retries_before=$(dest dst2 retries)
metric_complete_before=$(metric 'ferry_jobs{destination="dst1",state="complete"}')
metric_retries_before=$(metric 'ferry_retries_total{destination="dst2"}')
note "before the reload: dst1 completed=$completed_before (metric $metric_complete_before), dst2 retries=$retries_before (metric $metric_retries_before)"
((completed_before >= N)) || fail "dst1 completed $completed_before before the reload"
((metric_complete_before >= N)) || fail "ferry_jobs{dst1,complete} $metric_complete_before before the reload"

# The new config: no rule selects gone/*; dst2 stays a destination (keep/**).
write_config '  - { name: keep, source: src, repositories: ["keep/**"], destinations: [{ registry: dst2 }] }'
reloads_before=$(grep -ac 'reloaded config=' "$TEST_TMP/ferry.log" || true)
kill -HUP "$ferry_PID"
reloaded() { (($(grep -ac 'reloaded config=' "$TEST_TMP/ferry.log" || true) > reloads_before)); }
wait_until 30 reloaded || fail "no reload within 30 s: $(tail -n 5 "$TEST_TMP/ferry.log")"
wait_until 10 st >/dev/null || fail "/v1/status does not answer after the reload"
sleep 1 # let the new engine read its backlog

completed_after=$(dest dst1 completed)
retries_after=$(dest dst2 retries)
metric_complete_after=$(metric 'ferry_jobs{destination="dst1",state="complete"}')
metric_retries_after=$(metric 'ferry_retries_total{destination="dst2"}')
note "after the reload: dst1 completed=$completed_after (metric $metric_complete_after), dst2 retries=$retries_after (metric $metric_retries_after)"
note "after the reload: gone/x job $(gone_job)"
((completed_after >= completed_before)) ||
  fail "/v1/status dst1 completed went from $completed_before to $completed_after across the reload"
((metric_complete_after >= metric_complete_before)) ||
  fail "ferry_jobs{destination=\"dst1\",state=\"complete\"} went from $metric_complete_before to $metric_complete_after across the reload"
[[ -n "$retries_after" && "$retries_after" != null ]] || fail "dst2 is missing from /v1/status after the reload: $(st)"
((retries_after >= retries_before)) ||
  fail "/v1/status dst2 retries went from $retries_before to $retries_after across the reload"
((metric_retries_after >= metric_retries_before)) ||
  fail "ferry_retries_total{destination=\"dst2\"} went from $metric_retries_before to $metric_retries_after across the reload"
pass "the reload keeps the per-destination counters (completed $completed_after >= $completed_before, retries $retries_after >= $retries_before)"

for i in $(seq 1 $N); do
  d=$(jq -r .digest "$TEST_TMP/app$i.json")
  assert_eq "$(jobs | jq -r --arg d "$d" 'select(.destination == "dst1" and .repository == "app" and .digest == $d) | .state')" \
    COMPLETE "app:v$i's job record after the reload"
done
pass "the app jobs' records are still COMPLETE"

gone_superseded() { gone_job | jq -e '.state == "SUPERSEDED" and (.last_error | contains("no rule selects"))' >/dev/null; }
wait_until 15 gone_superseded ||
  fail "the gone/x job (no rule selects it now) is not SUPERSEDED with 'no rule selects' 15 s after the reload: $(gone_job || true)"
# It stays so, and nothing more is tried at dst2 for it.
sleep 3
gone_superseded || fail "the gone/x job did not stay SUPERSEDED: $(gone_job)"
pass "the job no rule selects any more ended SUPERSEDED: $(gone_job | jq -r .last_error)"

kill -TERM "$ferry_PID"
wait_until 20 bash -c "! kill -0 $ferry_PID 2>/dev/null" || fail "ferry serve did not exit on SIGTERM"
