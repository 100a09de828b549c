#!/usr/bin/env bash
# Benchmark comparison: tests/bench/fleet.sh for two ferry binaries, side by
# side in one run, as medians and candidate/baseline ratios.
#
#   BASELINE_BIN=/tmp/ferry-old bash tests/bench/fleet_compare.sh
#       (candidate: build/ferry, or $FERRY_BIN; 2 x COMPARE_RUNS fleet.sh
#        invocations, 5-7 min each on 2 cores: ~35 min for the default 3 rounds)
#   BASELINE_BIN=... BENCH_QUICK=1 COMPARE_RUNS=1 bash tests/bench/fleet_compare.sh   (~2 min check)
#
# Both binaries are copied at the start (a rebuild meanwhile does not mix
# binaries). Then COMPARE_RUNS rounds, each one fleet.sh invocation for the
# baseline and then one for the candidate (base, cand, base, cand, ...), each
# with BENCH_RUNS=1 and its own BENCH_OUT; every other BENCH_* variable
# (BENCH_QUICK, BENCH_REPOS, BENCH_PUSH_RATE, ...) is passed through as set.
# From each report: ferry's wall time with 1 and with 3 destinations, requests
# to the source in the 3-destination run, the no-op rerun's wall time,
# push-to-replicated latency p50/p99 (and a few more: ferry's CPU, skopeo's
# walls as a control for machine noise, since skopeo is the same in both arms).
# A fleet.sh invocation that exits non-zero is listed with its exit status and
# the tail of its log, and left out of the medians; this script then exits 1.
#
# Verdict: 3-destination wall, candidate median / baseline median <= 1.05;
# candidate push-to-replicated p99 (median over its runs) <= 1000 ms. A missed
# target does not change the exit status.
#
# Environment:
#   BASELINE_BIN     baseline ferry binary (required)
#   FERRY_BIN        candidate ferry binary (default build/ferry)
#   BASELINE_REV, CANDIDATE_REV   optional git revisions the binaries were
#                    built from; the report gives `git describe` of each
#   COMPARE_RUNS=3   rounds (one baseline + one candidate invocation each)
#   COMPARE_OUT=FILE Markdown report (default build/bench/fleet_compare.md)
#   BENCH_*          passed to fleet.sh (BENCH_RUNS and BENCH_OUT are set here)
#   FLEET_SH         the bench to run (default tests/bench/fleet.sh; for testing)
#
# Per-invocation reports and logs stay in build/bench/compare.DATE/.
# Exit status: 0 when every invocation succeeded, 1 otherwise.
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
bench_root="${FERRY_BUILD_DIR:-$top/build}/bench"
FLEET_SH=${FLEET_SH:-$top/tests/bench/fleet.sh}
RUNS=${COMPARE_RUNS:-3}
OUT=${COMPARE_OUT:-$bench_root/fleet_compare.md}
CAND_SRC=${FERRY_BIN:-$top/build/ferry}
BASE_SRC=${BASELINE_BIN:-}

die() { echo "fleet_compare: $*" >&2; exit 2; }
say() { echo "fleet_compare: $*" >&2; }
[[ -n "$BASE_SRC" ]] || die "set BASELINE_BIN to the baseline ferry binary"
[[ -x "$BASE_SRC" ]] || die "baseline binary not executable: $BASE_SRC"
[[ -x "$CAND_SRC" ]] || die "candidate binary not executable: $CAND_SRC (build it, or set FERRY_BIN)"
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "COMPARE_RUNS must be a positive integer, got '$RUNS'"
[[ -f "$FLEET_SH" ]] || die "no bench at $FLEET_SH"
for tool in python3 sha256sum; do command -v "$tool" >/dev/null || die "needs $tool"; done
if [[ -n "${BENCH_RUNS:-}" && "$BENCH_RUNS" != 1 ]]; then
  say "BENCH_RUNS=$BENCH_RUNS ignored: every fleet.sh invocation runs with BENCH_RUNS=1 (use COMPARE_RUNS)"
fi

started=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
t_start=$(date +%s)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
work="$bench_root/compare.$(date -u +%Y%m%d-%H%M%S)"
mkdir -p "$work"

# Snapshots of both binaries, taken now.
cp "$BASE_SRC" "$work/ferry-baseline"
cp "$CAND_SRC" "$work/ferry-candidate"
BASE_SHA=$(sha256sum "$work/ferry-baseline" | cut -d' ' -f1)
CAND_SHA=$(sha256sum "$work/ferry-candidate" | cut -d' ' -f1)
[[ "$BASE_SHA" != "$CAND_SHA" ]] || say "warning: baseline and candidate are the same binary ($BASE_SHA)"
describe() { # REV -> "describe (subject)" or "not given"
  if [[ -z "$1" ]]; then
    echo "not given"
  elif d=$(git -C "$top" describe --always --tags "$1" 2>/dev/null); then
    echo "\`$d\` ($(git -C "$top" log -1 --format=%s "$1" | cut -c1-100))"
  else
    echo "\`$1\` (not a revision of $top)"
  fi
}
BASE_DESC=$(describe "${BASELINE_REV:-}")
CAND_DESC=$(describe "${CANDIDATE_REV:-}")
BENCH_VARS=$(env | grep -E '^BENCH_' | grep -vE '^BENCH_(RUNS|OUT)=' | sort | tr '\n' ' ' || true)

say "baseline  $BASE_SRC sha256 $BASE_SHA"
say "candidate $CAND_SRC sha256 $CAND_SHA"
say "$RUNS rounds (baseline, then candidate) of $FLEET_SH${BENCH_VARS:+ with $BENCH_VARS}; reports and logs in $work"

# ------------------------------------------------------------------ runs
# Ctrl-C ends the comparison, not just the fleet.sh invocation running
# (fleet.sh cleans up its registries itself); the per-run files stay.
trap 'say "interrupted; per-run reports and logs in $work"; exit 130' INT TERM
failed=0
RUNLIST="$work/runs.tsv" # round, arm, exit status, seconds, report, log
: >"$RUNLIST"
for ((round = 1; round <= RUNS; round++)); do
  for arm in baseline candidate; do
    rep="$work/$arm-$round.md" log="$work/$arm-$round.log"
    say "round $round/$RUNS: $arm started $(date -u +%H:%M:%S) (load $(cut -d' ' -f1-3 /proc/loadavg))"
    t0=$(date +%s)
    rc=0
    BENCH_RUNS=1 BENCH_OUT="$rep" BENCH_README='' FERRY_BIN="$work/ferry-$arm" bash "$FLEET_SH" >"$log" 2>&1 || rc=$?
    dt=$(($(date +%s) - t0))
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$arm" "$rc" "$dt" "$rep" "$log" >>"$RUNLIST"
    if ((rc != 0)); then
      failed=1
      say "round $round/$RUNS: $arm FAILED (exit $rc) after $dt s; last lines of $log:"
      tail -n 30 "$log" | sed 's/^/    /' >&2
    else
      say "round $round/$RUNS: $arm done in $dt s"
    fi
  done
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
elapsed=$(($(date +%s) - t_start))

# ------------------------------------------------------------------ report
FLEET_SH_SHOWN=${FLEET_SH#"$top"/}
export FLEET_SH_SHOWN RUNLIST OUT BASE_SRC CAND_SRC BASE_SHA CAND_SHA BASE_DESC CAND_DESC BENCH_VARS \
  LOAD_START LOAD_END started elapsed RUNS FLEET_SH work
python3 - <<'PY'
import os, re, statistics, subprocess, sys

E = os.environ


def cells(line):
    parts = [c.strip() for c in line.strip().strip("|").split("|")]
    return parts


def num(text):
    """First number in a cell ('12.34', '1,234', '0.98×'), or None."""
    if text is None:
        return None
    m = re.search(r"-?\d[\d,]*(?:\.\d+)?", text)
    return float(m.group(0).replace(",", "")) if m else None


def parse(path):
    """The figures of one fleet.sh report (None where absent)."""
    r = {}
    try:
        text = open(path, encoding="utf-8").read()
    except OSError:
        return None
    sections, cur = {}, None
    for line in text.splitlines():
        if line.startswith("### "):
            cur = line[4:].strip().lower()
            sections[cur] = []
        elif cur is not None:
            sections[cur].append(line)

    def section(prefix):
        for k, v in sections.items():
            if k.startswith(prefix):
                return v
        return None

    def table(prefix):
        rows = {}
        for line in section(prefix) or []:
            if line.startswith("|"):
                c = cells(line)
                if len(c) >= 3 and not set(c[1]) <= set("-: "):
                    rows.setdefault(c[0].lower(), c[1:])
        return rows

    def cell(rows, metric, col=0):
        v = rows.get(metric)
        if v is None:
            v = next((v for k, v in rows.items() if k.startswith(metric)), None)
        return num(v[col]) if v is not None and col < len(v) else None

    one, three, noop = table("1 destination"), table("3 destinations"), table("no-op")
    r["wall1"] = cell(one, "wall s")
    r["wall3"] = cell(three, "wall s")
    r["src_req3"] = cell(three, "requests to the source")
    r["src_req1"] = cell(one, "requests to the source")
    r["wall_noop"] = cell(noop, "wall s")
    r["src_req_noop"] = cell(noop, "requests to the source")
    r["cpu1"] = cell(one, "cpu s (user+sys")
    r["cpu3"] = cell(three, "cpu s (user+sys")
    r["sk_wall1"] = cell(one, "wall s", 1)
    r["sk_wall3"] = cell(three, "wall s", 1)
    lat = "\n".join(section("push-to-replicated") or [])
    m = re.search(r"p50 (\d+(?:\.\d+)?) ms, p90 (\d+(?:\.\d+)?) ms, p99 (\d+(?:\.\d+)?) ms, max (\d+(?:\.\d+)?) ms", lat)
    if m:
        r["p50"], r["p90"], r["p99"], r["pmax"] = (float(x) for x in m.groups())
    m = re.search(r"(\d+) pushed but never seen", lat)
    r["missing"] = float(m.group(1)) if m else None
    m = re.search(r"achieved (\d+(?:\.\d+)?)/s", lat)
    r["rate"] = float(m.group(1)) if m else None
    m = re.search(r"journaled → visible at the destination p50 (\d+) ms, p99 (\d+) ms", lat)
    if m:
        r["repl_p50"], r["repl_p99"] = float(m.group(1)), float(m.group(2))
    m = re.search(r"binary sha256 ([0-9a-f]+)", text)
    r["sha"] = m.group(1) if m else None
    m = re.search(r"load average (\S+ \S+ \S+) at the start, (\S+ \S+ \S+) at the end", text)
    r["load"] = "%s → %s" % m.groups() if m else None
    r["verify_failed"] = any(k.startswith("verification failed") for k in sections)
    r["not_sustained"] = "did not sustain" in lat
    return r


runs = []
for line in open(E["RUNLIST"]):
    rnd, arm, rc, dt, rep, log = line.rstrip("\n").split("\t")
    p = parse(rep) if os.path.exists(rep) else None
    runs.append(dict(round=int(rnd), arm=arm, rc=int(rc), secs=int(dt), rep=rep, log=log, r=p or {}))

# (key, label, format, lower is better)
METRICS = [
    ("wall1", "ferry sync wall, 1 destination (s)", "%.2f"),
    ("wall3", "ferry sync wall, 3 destinations (s)", "%.2f"),
    ("src_req3", "requests to the source, 3 destinations", "%.0f"),
    ("src_req1", "requests to the source, 1 destination", "%.0f"),
    ("wall_noop", "no-op rerun wall (s)", "%.2f"),
    ("src_req_noop", "requests to the source, no-op rerun", "%.0f"),
    ("p50", "push-to-replicated p50 (ms)", "%.0f"),
    ("p99", "push-to-replicated p99 (ms)", "%.0f"),
    ("p90", "push-to-replicated p90 (ms)", "%.0f"),
    ("pmax", "push-to-replicated max (ms)", "%.0f"),
    ("repl_p99", "journaled → visible p99 (ms)", "%.0f"),
    ("cpu1", "ferry CPU s, 1 destination", "%.2f"),
    ("cpu3", "ferry CPU s, 3 destinations", "%.2f"),
    ("sk_wall1", "control: skopeo wall, 1 destination (s)", "%.2f"),
    ("sk_wall3", "control: skopeo wall, 3 destinations (s)", "%.2f"),
]


def values(arm, key):
    return [x["r"][key] for x in runs if x["arm"] == arm and x["rc"] == 0 and x["r"].get(key) is not None]


def median(v):
    return statistics.median(v) if v else None


def f(fmt, v):
    return "n/a" if v is None else fmt % v


def ratio(a, b):
    return None if a is None or b in (None, 0) else a / b


med = {arm: {k: median(values(arm, k)) for k, _, _ in METRICS} for arm in ("baseline", "candidate")}
out = []
w = out.append
w("## fleet.sh: baseline vs candidate ferry")
w("")
w("%s; %s CPUs; %s rounds (baseline, candidate, alternating) of `%s`, each with BENCH_RUNS=1%s; took %s s; load average %s at the start, %s at the end."
  % (E["started"], os.cpu_count(), E["RUNS"], E["FLEET_SH_SHOWN"],
     (", " + " ".join("`%s`" % v for v in E["BENCH_VARS"].split())) if E["BENCH_VARS"].strip() else "",
     E["elapsed"], E["LOAD_START"], E["LOAD_END"]))
w("")
w("- baseline: `%s`, sha256 `%s`, git: %s" % (E["BASE_SRC"], E["BASE_SHA"], E["BASE_DESC"]))
w("- candidate: `%s`, sha256 `%s`, git: %s" % (E["CAND_SRC"], E["CAND_SHA"], E["CAND_DESC"]))
w("- Medians over the successful runs of each binary; ratio = candidate median ÷ baseline median (< 1 is better for every row). "
  "skopeo is the same in both arms: its rows measure the machine's drift between runs.")
w("- Per-run reports and logs: `%s`" % E["work"])
w("")
w("| metric | baseline median | candidate median | candidate/baseline |")
w("| --- | ---: | ---: | ---: |")
for k, label, fmt in METRICS:
    b, c = med["baseline"][k], med["candidate"][k]
    rr = ratio(c, b)
    w("| %s | %s | %s | %s |" % (label, f(fmt, b), f(fmt, c), "n/a" if rr is None else "%.3f×" % rr))
w("")

# verdict
r3 = ratio(med["candidate"]["wall3"], med["baseline"]["wall3"])
p99c = med["candidate"]["p99"]
p99all = values("candidate", "p99")
v1 = "n/a" if r3 is None else ("PASS" if r3 <= 1.05 else "MISS")
v2 = "n/a" if p99c is None else ("PASS" if p99c <= 1000 else "MISS")
rate = median(values("candidate", "rate"))
w("### verdict")
w("")
w("- 3-destination `ferry sync` wall within 5 %% of the baseline (candidate/baseline ≤ 1.05): %s → **%s**"
  % ("n/a" if r3 is None else "%.3f×" % r3, v1))
w("- candidate push-to-replicated p99 ≤ 1 s at %s pushes/s: median %s ms%s → **%s**"
  % (E.get("BENCH_PUSH_RATE", "20"), f("%.0f", p99c),
     (" (runs: %s ms)" % ", ".join("%.0f" % x for x in p99all)) if p99all else "", v2))
if rate is not None:
    w("  (pushes achieved: median %.2f/s)" % rate)
paired = []
for rnd in sorted({x["round"] for x in runs}):
    b = [x for x in runs if x["round"] == rnd and x["arm"] == "baseline" and x["rc"] == 0]
    c = [x for x in runs if x["round"] == rnd and x["arm"] == "candidate" and x["rc"] == 0]
    if b and c:
        rr = ratio(c[0]["r"].get("wall3"), b[0]["r"].get("wall3"))
        if rr is not None:
            paired.append(rr)
if paired:
    w("- 3-destination wall, candidate/baseline within each round: %s" % ", ".join("%.3f×" % x for x in paired))
fails = [x for x in runs if x["rc"] != 0]
if fails:
    w("- **%d fleet.sh invocation(s) failed** (left out of the medians): %s"
      % (len(fails), "; ".join("round %d %s exit %d (log `%s`)" % (x["round"], x["arm"], x["rc"], x["log"]) for x in fails)))
warn = [x for x in runs if x["r"].get("verify_failed") or x["r"].get("not_sustained")]
for x in warn:
    if x["r"].get("verify_failed"):
        w("- round %d %s: its report says VERIFICATION FAILED" % (x["round"], x["arm"]))
    if x["r"].get("not_sustained"):
        w("- round %d %s: the pushers did not sustain the push rate" % (x["round"], x["arm"]))
w("")

# every run
cols = [("wall1", "%.2f"), ("wall3", "%.2f"), ("src_req3", "%.0f"), ("wall_noop", "%.2f"),
        ("p50", "%.0f"), ("p99", "%.0f"), ("sk_wall3", "%.2f")]
w("### every run")
w("")
w("| round | binary | exit | bench s | 1-dest wall s | 3-dest wall s | src requests, 3-dest | no-op wall s | p50 ms | p99 ms | skopeo 3-dest wall s | load avg start → end |")
w("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
for x in runs:
    r = x["r"]
    w("| %d | %s | %d | %d | %s | %s |" % (x["round"], x["arm"], x["rc"], x["secs"],
      " | ".join(f(fmt, r.get(k)) for k, fmt in cols), r.get("load") or "n/a"))
w("")
for arm, full in (("baseline", E["BASE_SHA"]), ("candidate", E["CAND_SHA"])):
    s = {x["r"].get("sha") for x in runs if x["arm"] == arm and x["r"].get("sha")}
    if s and not all(full.startswith(v) for v in s):
        w("**Warning:** the %s reports name binary sha256 %s, not %s…" % (arm, ", ".join(sorted(s)), full[:12]))
        w("")

text = "\n".join(out) + "\n"
os.makedirs(os.path.dirname(os.path.abspath(E["OUT"])), exist_ok=True)
open(E["OUT"], "w", encoding="utf-8").write(text)
sys.stdout.write("\n" + text)
PY
say "report written to $OUT"
exit "$failed"
