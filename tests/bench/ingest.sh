#!/usr/bin/env bash
# shellcheck disable=SC2154 # ferry_PID is set by lib.sh's ferry_serve_start
# Benchmark: webhook ingest into `ferry serve`, on loopback.
#
#   bash tests/bench/ingest.sh                         (builds ingest_load and ferry first)
#   BENCH_RUNS=1 BENCH_DURATION=3 bash tests/bench/ingest.sh   (quick check)
#
# tests/tools/ingest_load posts Distribution notification envelopes of 10
# manifest pushes each (ids unique per run) over keep-alive HTTP/1.1
# connections to POST /v1/events/src. Every run gets a fresh daemon with a
# fresh data_dir (the journal, RocksDB, on the same disk as build/), started
# with tests/integration/lib.sh's ferry_serve_start and stopped by PID.
# Scenarios:
#   closed loop, 8 / 32 / 64 connections: the most the daemon takes
#   open loop at 5,000 / 10,000 / 20,000 events/s (64 connections): latency
#     from each request's scheduled send time (no coordinated omission)
# After each run `ferry journal stats` must count exactly the events the
# daemon acknowledged with 200 (nothing lost, nothing twice), or the bench
# fails. Runs go round-robin over the scenarios (run 1 of each, then run 2 ...).
# Reported per scenario: medians over the runs of events/s, p50, p99, max and
# the CPU of the daemon and of the load tool (percent of one core over the
# run; the machine's cores are shared by both); errors are summed over runs.
#
# Environment:
#   BENCH_RUNS=N            runs per scenario (default: 3 when the estimate stays
#                           under BENCH_BUDGET seconds, else 1 and the report says so)
#   BENCH_BUDGET=300        seconds the default BENCH_RUNS aims to stay under
#   BENCH_DURATION=10       seconds of load per run (at most 120)
#   BENCH_CLIENTS="8 32 64" closed-loop connection counts
#   BENCH_RATES="5000 10000 20000"   open-loop rates, events/s
#   BENCH_OPEN_CLIENTS=64   connections in the open-loop runs
#   BENCH_OUT=FILE          Markdown report (default build/bench/ingest.md)
#   BENCH_README=FILE       write the report between FILE's bench:ingest markers
#                           (./build.sh bench: README.md) when every run checked
#                           out; needs 3 runs or more (the budget then does not apply)
#   FERRY_BIN, INGEST_LOAD  binaries (default build/ferry, build/ingest_load)
#   KEEP_TMP=1              keep the journals and logs (build/bench/itest.*)
#
# Exit status: 0 when every run completed and its journal matched what was
# acknowledged (targets missed or not); 1 otherwise.
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
build_dir="$top/build"
bench_root="${FERRY_BUILD_DIR:-$build_dir}/bench"
mkdir -p "$bench_root"

export FERRY_SOURCE_DIR="$top"
# shellcheck source=SCRIPTDIR/benchlib.sh
source "$top/tests/bench/benchlib.sh"
# Build first, before lib.sh makes its temp dir: a failed build leaves nothing behind.
bench_build_tools "$bench_root/ingest-build.log"

export FERRY_BUILD_DIR="$bench_root"
# shellcheck source=SCRIPTDIR/../integration/lib.sh
source "$top/tests/integration/lib.sh"

DURATION=${BENCH_DURATION:-10}
BUDGET=${BENCH_BUDGET:-300}
read -r -a CLOSED_CLIENTS <<<"${BENCH_CLIENTS:-8 32 64}"
read -r -a OPEN_RATES <<<"${BENCH_RATES:-5000 10000 20000}"
OPEN_CLIENTS=${BENCH_OPEN_CLIENTS:-64}
OUT=${BENCH_OUT:-$bench_root/ingest.md}
[[ "$DURATION" =~ ^[1-9][0-9]*$ && "$DURATION" -le 120 ]] ||
  fail "BENCH_DURATION must be 1..120 seconds, got '$DURATION'"
[[ "$BUDGET" =~ ^[1-9][0-9]*$ ]] || fail "BENCH_BUDGET must be a positive integer, got '$BUDGET'"
[[ "$OPEN_CLIENTS" =~ ^[1-9][0-9]*$ ]] || fail "BENCH_OPEN_CLIENTS must be a positive integer"
for n in "${CLOSED_CLIENTS[@]}" "${OPEN_RATES[@]}"; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || fail "BENCH_CLIENTS and BENCH_RATES take positive integers, got '$n'"
done
for tool in jq curl python3 timeout; do
  command -v "$tool" >/dev/null || fail "bench needs $tool"
done

# Scenarios: "closed CLIENTS" and "open RATE".
SCENARIOS=()
for c in "${CLOSED_CLIENTS[@]}"; do SCENARIOS+=("closed $c"); done
for r in "${OPEN_RATES[@]}"; do SCENARIOS+=("open $r"); done
PER_RUN_S=$((DURATION + 2)) # daemon start, journal check, drain and stop
RUNS_NOTE=""
if [[ -n "${BENCH_RUNS:-}" ]]; then
  RUNS=$BENCH_RUNS
  [[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || fail "BENCH_RUNS must be a positive integer, got '$RUNS'"
else
  RUNS=3
  # The README's figures are medians of 3 whatever the budget.
  if [[ -z "${BENCH_README:-}" ]] && ((${#SCENARIOS[@]} * RUNS * PER_RUN_S > BUDGET)); then
    RUNS=1
    RUNS_NOTE="1 run per scenario, not 3: 3 would take about $((${#SCENARIOS[@]} * 3 * PER_RUN_S)) s, over the ${BUDGET} s budget"
  fi
fi
bench_readme_check ingest "$RUNS"

# Snapshots: a rebuild during the bench must not mix binaries.
FERRY="$TEST_TMP/ferry"
LOAD="$TEST_TMP/ingest_load"
cp "${FERRY_BIN:-$build_dir/ferry}" "$FERRY"
cp "${INGEST_LOAD:-$build_dir/ingest_load}" "$LOAD"
export FERRY_BIN="$FERRY"
FERRY_SHA=$(sha256sum "$FERRY" | cut -c1-12)
FERRY_COMMIT=$(bench_commit)
TOKEN=bench-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
export FERRY_WEBHOOK_TOKEN=$TOKEN
CLK_TCK=$(getconf CLK_TCK)
RESULTS="$TEST_TMP/results.jsonl"
: >"$RESULTS"
ODD="$TEST_TMP/odd.txt" # anything unexpected, for the report
: >"$ODD"
bench_start=$EPOCHREALTIME
BENCH_FAILED=0

# ------------------------------------------------------------------ helpers

# cpu_ticks PID : user + system clock ticks of the whole process
cpu_ticks() {
  awk '{ print $14 + $15 }' "/proc/$1/stat"
}

# thread_cpu PID : {"loop_s","workers_s","rocksdb_s"}: CPU seconds by thread kind. The
# loop thread is the one whose id is the pid; libuv's pool threads (RocksDB
# writes and syncs run there) carry the process name; RocksDB's own
# background threads are "rocksdb:*".
thread_cpu() {
  local pid=$1 t comm ticks loop=0 workers=0 rocks=0
  for t in /proc/"$pid"/task/*; do
    comm=$(cat "$t/comm" 2>/dev/null) || continue
    ticks=$(awk '{ print $14 + $15 }' "$t/stat" 2>/dev/null) || continue
    if [[ "${t##*/}" == "$pid" ]]; then
      loop=$((loop + ticks))
    elif [[ "$comm" == rocksdb* ]]; then
      rocks=$((rocks + ticks))
    else
      workers=$((workers + ticks))
    fi
  done
  awk -v l="$loop" -v w="$workers" -v r="$rocks" -v hz="$CLK_TCK" \
    'BEGIN { printf "{\"loop_s\":%.2f,\"workers_s\":%.2f,\"rocksdb_s\":%.2f}", l / hz, w / hz, r / hz }'
}

# fsync_probe DIR : median milliseconds of a 4 KiB write + fsync there (50 tries),
# the floor under one group commit
fsync_probe() {
  python3 - "$1" <<'PY'
import os, statistics, sys, time
path = os.path.join(sys.argv[1], "fsync-probe")
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
samples = []
for i in range(50):
    os.write(fd, b"x" * 4096)
    t = time.perf_counter()
    os.fsync(fd)
    samples.append((time.perf_counter() - t) * 1000)
os.close(fd)
os.unlink(path)
print("%.2f" % statistics.median(samples))
PY
}

# one_run SCENARIO RUN : a fresh daemon, one ingest_load run, the journal check;
# appends one JSON object to $RESULTS
one_run() {
  local mode=$1 value=$2 run=$3
  local name="$mode-$value-$run"
  local dir="$TEST_TMP/$name" port clients rate
  mkdir -p "$dir"
  port=$(free_port)
  cat >"$dir/ferry.yaml" <<YAML
data_dir: $dir/data
listen: 127.0.0.1:$port
webhook_token_env: FERRY_WEBHOOK_TOKEN
poll_interval: 0
registries:
  src: { url: "http://127.0.0.1:1", poll: false }
  dst: { url: "http://127.0.0.1:2", poll: false }
rules:
  - name: bench
    source: src
    repositories: ["**"]
    destinations: [{ registry: dst }]
YAML
  if [[ "$mode" == closed ]]; then
    clients=$value rate=0
  else
    clients=$OPEN_CLIENTS rate=$value
  fi
  ferry_serve_start ferry "$dir/ferry.yaml" "$port"
  local pid=$ferry_PID before after load_rc=0
  before=$(cpu_ticks "$pid")
  timeout $((DURATION + 30)) "$LOAD" --url "http://127.0.0.1:$port/v1/events/src" --token "$TOKEN" \
    --clients "$clients" --duration "$DURATION" --rate "$rate" --run-id "$name" --json \
    >"$dir/load.json" 2>"$dir/load.err" || load_rc=$?
  ((load_rc == 0)) || fail "$name: ingest_load exited $load_rc: $(cat "$dir/load.err")"
  if ! _itest_alive "$pid"; then
    echo "$name: ferry serve exited during the run" >>"$ODD"
    BENCH_FAILED=1
  fi
  local threads='{"loop_s":0,"workers_s":0,"rocksdb_s":0}'
  after=$(cpu_ticks "$pid" 2>/dev/null) || after=$before
  threads=$(thread_cpu "$pid" 2>/dev/null) || true
  "$FERRY" journal -c "$dir/ferry.yaml" stats >"$dir/stats.txt" 2>&1 ||
    fail "$name: ferry journal stats failed: $(cat "$dir/stats.txt")"
  local entries dedup
  entries=$(awk '$1 == "entries" { print $2 }' "$dir/stats.txt")
  dedup=$(awk '$1 == "dedup_keys" { print $2 }' "$dir/stats.txt")
  stop_bg ferry
  # Anything the daemon logged besides its start and the expected drain warning.
  grep -vE '^ferry: serving on |warn stopping signal=TERM: draining accepted events$' \
    "$TEST_TMP/ferry.log" | sed "s/^/$name: ferry serve: /" >>"$ODD" || true
  mv "$TEST_TMP/ferry.log" "$dir/ferry.log"
  if [[ "${KEEP_TMP:-0}" != 1 ]]; then
    rm -rf "$dir/data"
  fi
  jq -c --arg name "$name" --arg mode "$mode" --argjson value "$value" --argjson run "$run" \
    --argjson entries "$entries" --argjson dedup "$dedup" \
    --argjson ferry_cpu "$(awk -v t=$((after - before)) -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }')" \
    --argjson threads "$threads" \
    '. + {name: $name, scenario: $mode, value: $value, run: $run, journal_entries: $entries,
          dedup_keys: $dedup, ferry_cpu_s: $ferry_cpu, ferry_threads: $threads}' \
    "$dir/load.json" >>"$RESULTS"
  local line
  line=$(tail -n 1 "$RESULTS")
  say "$(jq -r '"\(.name): \(.events_per_s | floor) events/s, p50 \(.p50_ms) ms, p99 \(.p99_ms) ms, max \(.max_ms) ms, errors \(.errors), unsent \(.unsent), journal \(.journal_entries)/\(.events), ferry cpu \(.ferry_cpu_s) s, load cpu \(.cpu_s) s"' <<<"$line")"
  # Nothing lost, nothing twice: the journal holds exactly the acknowledged events.
  if ! jq -e '.journal_entries == .events and .accepted == .events and .dedup_keys == .events
              and .duplicates == 0' <<<"$line" >/dev/null; then
    echo "$name: journal holds $entries entries ($dedup dedup keys), but $(jq -r '"\(.events) events were acknowledged (accepted \(.accepted), duplicates \(.duplicates), errors \(.errors))"' <<<"$line")" |
      tee -a "$ODD" >&2
    BENCH_FAILED=1
  fi
}

# ------------------------------------------------------------------ runs

mkdir -p "$TEST_TMP/probe"
FSYNC_MS=$(fsync_probe "$TEST_TMP/probe")
say "ferry $FERRY_COMMIT (binary sha256 $FERRY_SHA), $(nproc) cores, ${#SCENARIOS[@]} scenarios x $RUNS run(s) x ${DURATION} s; fsync of 4 KiB in build/bench: median $FSYNC_MS ms"
[[ -z "$RUNS_NOTE" ]] || say "$RUNS_NOTE"
for ((run = 1; run <= RUNS; run++)); do
  for s in "${SCENARIOS[@]}"; do
    read -r mode value <<<"$s"
    one_run "$mode" "$value" "$run"
  done
done
elapsed=$(awk -v a="$bench_start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }')

# ------------------------------------------------------------------ report

# Medians per scenario (the middle run by each metric; the lower middle for an
# even count), errors summed over the runs.
jq -s -r --argjson runs "$RUNS" '
  def median: sort | .[((length - 1) / 2 | floor)];
  def pct(cpu; s): if s > 0 then (100 * cpu / s | round | tostring) + " %" else "-" end;
  def fmt0: (. * 1 | round | tostring);
  def fmt2: (. * 100 | round / 100 | tostring);
  group_by([.scenario != "closed", .value]) | .[] |
  {
    scenario: .[0].scenario, value: .[0].value, clients: .[0].clients,
    eps: (map(.events_per_s) | median), p50: (map(.p50_ms) | median),
    p99: (map(.p99_ms) | median), max: (map(.max_ms) | median),
    errors: (map(.errors) | add), unsent: (map(.unsent) | add),
    ferry: (map(100 * .ferry_cpu_s / .elapsed_s) | median),
    load: (map(100 * .cpu_s / .elapsed_s) | median),
    loop: (map(100 * .ferry_threads.loop_s / .elapsed_s) | median),
    journal: (if all(.journal_entries == .events) then "ok" else "MISMATCH" end)
  } |
  "| \(if .scenario == "closed" then "closed loop" else "open loop" end) | \(.clients) | \(if .scenario == "closed" then "max" else (.value | tostring) end) | \(.eps | fmt0) | \(.p50 | fmt2) | \(.p99 | fmt2) | \(.max | fmt2) | \(.errors)\(if .unsent > 0 then " (+\(.unsent) unsent)" else "" end) | \(.journal) | \(.ferry | fmt0) % (loop \(.loop | fmt0) %) | \(.load | fmt0) % |"
' "$RESULTS" >"$TEST_TMP/rows.md"

best=$(jq -s '[.[] | select(.scenario == "closed")] | group_by(.value)
  | map({clients: .[0].value, eps: (map(.events_per_s) | sort | .[((length - 1) / 2 | floor)])})
  | max_by(.eps) // {clients: 0, eps: 0}' "$RESULTS")
best_eps=$(jq -r '.eps | round' <<<"$best")
best_clients=$(jq -r .clients <<<"$best")
p99_5k=$(jq -s -r '[.[] | select(.scenario == "open" and .value == 5000) | .p99_ms] | sort
  | if length > 0 then .[((length - 1) / 2 | floor)] | tostring else "" end' "$RESULTS")
verdict() { if [[ "$1" == 1 ]]; then echo PASS; else echo MISS; fi; }
t_eps=$(verdict "$(awk -v e="$best_eps" 'BEGIN { print (e >= 20000) }')")
if [[ -n "$p99_5k" ]]; then
  t_p99="$(verdict "$(awk -v p="$p99_5k" 'BEGIN { print (p <= 20) }')") (p99 $p99_5k ms)"
else
  t_p99="not measured (5000 is not in BENCH_RATES)"
fi

{
  echo "#### webhook ingest (\`ferry serve\`, $(nproc) cores shared with the load tool; median of $RUNS run(s), ${DURATION} s each)"
  echo
  echo "ferry $FERRY_COMMIT (binary sha256 $FERRY_SHA), $(date -u +%Y-%m-%d); envelopes of 10 Distribution events;"
  echo "journal on $(df -T "$TEST_TMP" | awk 'NR == 2 { print $2 }') next to build/ (4 KiB write + fsync there: median $FSYNC_MS ms); bench time ${elapsed} s."
  [[ -z "$RUNS_NOTE" ]] || echo "$RUNS_NOTE."
  echo
  echo "| scenario | clients | target events/s | events/s | p50 ms | p99 ms | max ms | errors | journal = acked | ferry CPU | load CPU |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |"
  cat "$TEST_TMP/rows.md"
  echo
  echo "targets: closed loop ≥ 20,000 events/s $t_eps ($best_eps events/s, $best_clients clients); p99 ≤ 20 ms at 5,000 events/s $t_p99"
  echo
  echo "CPU is percent of one core over the run (ferry: user + system from /proc; loop: its event-loop thread alone)."
  echo "Errors: non-200 answers, broken connections and unanswered requests, summed over the runs; unsent: open-loop"
  echo "requests still waiting for their connection when the time was up. journal = acked: \`ferry journal stats\`"
  echo "counted exactly the events answered 200, with no duplicates, after every run."
  echo
  echo "<details><summary>every run</summary>"
  echo
  echo "| run | events/s | p50 ms | p90 ms | p99 ms | max ms | requests | errors | unsent | journal entries | ferry CPU s (loop / pool / rocksdb) | load CPU s |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |"
  jq -r '"| \(.name) | \(.events_per_s | round) | \(.p50_ms) | \(.p90_ms) | \(.p99_ms) | \(.max_ms) | \(.requests) | \(.errors) | \(.unsent) | \(.journal_entries) | \(.ferry_cpu_s) (\(.ferry_threads.loop_s) / \(.ferry_threads.workers_s) / \(.ferry_threads.rocksdb_s)) | \(.cpu_s) |"' "$RESULTS"
  echo
  echo "</details>"
  if [[ -s "$ODD" ]]; then
    echo
    echo "unexpected (daemon log lines besides start and drain, journal mismatches):"
    echo
    echo '```'
    head -n 40 "$ODD"
    echo '```'
  fi
} >"$TEST_TMP/report.md"

mkdir -p "$(dirname "$OUT")"
cp "$TEST_TMP/report.md" "$OUT"
cat "$TEST_TMP/report.md"
say "report written to $OUT (${elapsed} s)"
((BENCH_FAILED == 0)) || fail "a run lost or duplicated events, or the daemon died; see the report"
bench_readme_write ingest "$TEST_TMP/report.md"
