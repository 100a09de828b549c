#!/usr/bin/env bash
# gc: a retention sweep at the source. 40 images (15 with --short) in four
# repositories sharing base layers are replicated to three destinations (one
# rule, deletes: true, webhooks plus a 2 s poll). Then for 60 s (20 s) a
# pusher adds an image every 0.3 s while a sweeper, through the registry API,
# deletes older images' manifests, pushes images and deletes their own layer
# at once (GC racing replication: the source can no longer give them; Ferry
# reads the source through a proxy that holds its blob GETs of gc/race, the
# repository of those images, for 1 s, so that the delete wins the race), and
# pushes images and deletes their manifest at once (gone before replicated).
# Halfway, fresh/probe:v1 is pushed. Asserts: no destination's circuit ever
# opens; the probe is at every destination within 5 s of its entry reaching
# the journal; once the sweep stops (within 120 s; 60 s) every destination is
# idle (no backlog, nothing in flight), `ferry verify` finds no drift except
# for the images whose layer the source lost, every tag deleted at the source
# is gone at every destination, and so is every manifest deleted there (by
# digest, untagged included); every FAILED job is one of those images.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
require_ferry
chaos_faults "a retention sweep at the source while images were pushed to 3 destinations"

initial=40 sweep_s=60 converge_s=120
if chaos_short; then
  initial=15 sweep_s=20 converge_s=60
fi
DESTS=(d1 d2 d3)

FERRY_PORT=$(free_port)
registry_start src --delete --notify "http://127.0.0.1:$FERRY_PORT/v1/events/src"
for d in "${DESTS[@]}"; do
  registry_start "$d" --delete
done
proxy_start psrc "$src_ADDR" 'GET /v2/gc/race/blobs/ delay_ms=1000'
cat >"$TEST_TMP/ferry.yaml" <<YAML
data_dir: $TEST_TMP/data
listen: 127.0.0.1:$FERRY_PORT
poll_interval: 2s
retry: { attempts: 5, base: 500ms, max: 3s }
circuit: { failures: 3, open_for: 10s }
registries:
  src: { url: "http://$psrc_ADDR" }
  d1: { url: "http://$d1_ADDR" }
  d2: { url: "http://$d2_ADDR" }
  d3: { url: "http://$d3_ADDR" }
rules:
  - { name: all, source: src, deletes: true, destinations: [{ registry: d1 }, { registry: d2 }, { registry: d3 }] }
YAML
sed -e "s#$psrc_ADDR#$src_ADDR#" -e "s#^data_dir: .*#data_dir: $TEST_TMP/verify-data#" \
  "$TEST_TMP/ferry.yaml" >"$TEST_TMP/verify.yaml"
# info: the "gone at the source" lines are counted
FERRY_LOG_LEVEL=info ferry_serve_start ferry "$TEST_TMP/ferry.yaml" "$FERRY_PORT"

# gc_check.py watch OUT TIMEOUT_S URL... : HEAD each manifest URL every 0.15 s
#   until it answers 200; appends "URL UNIX_MS" to OUT for each when it does.
# gc_check.py present FILE : HEAD each URL of FILE; prints "STATUS URL" for
#   every one that does not answer 404.
cat >"$TEST_TMP/gc_check.py" <<'PY'
import http.client, sys, time
ACCEPT = ("application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, "
          "application/vnd.docker.distribution.manifest.v2+json, "
          "application/vnd.docker.distribution.manifest.list.v2+json")
conns = {}
def head(url):
    hostport, path = url.split("://", 1)[1].split("/", 1)
    for _ in (0, 1):
        c = conns.get(hostport)
        try:
            if c is None:
                host, port = hostport.rsplit(":", 1)
                c = conns[hostport] = http.client.HTTPConnection(host, int(port), timeout=5)
            c.request("HEAD", "/" + path, headers={"Accept": ACCEPT, "User-Agent": "ferry-chaos-gc"})
            r = c.getresponse()
            r.read()
            return r.status
        except Exception:
            if c is not None:
                c.close()
            conns[hostport] = None
    return 0
if sys.argv[1] == "watch":
    out, end, left = sys.argv[2], time.time() + float(sys.argv[3]), list(sys.argv[4:])
    while left and time.time() < end:
        for u in list(left):
            if head(u) == 200:
                with open(out, "a") as f:
                    f.write("%s %d\n" % (u, int(time.time() * 1000)))
                left.remove(u)
        time.sleep(0.15)
else:
    with open(sys.argv[2]) as f:
        for u in f.read().split():
            s = head(u)
            if s != 404:
                print(s, u)
PY

# Images: one 96 KiB base layer shared by half the images (of every
# repository), one 32 KiB layer of their own.
push_img() { # REPO TAG SEED -> the push's JSON
  fixturegen push --registry "$src_ADDR" --repo "$1" --tag "$2" --seed "$3" --base-seed "gc-base-$(($4 % 2))" \
    --base-layers 1 --base-layer-size 96K --layers 1 --layer-size 32K --compact
}

# Phase 1: the images the sweep finds; every other one is a victim.
: >"$TEST_TMP/victims.txt"
for ((i = 0; i < initial; i++)); do
  repo="gc/app$((i % 4))"
  d=$(push_img "$repo" "v$i" "gc-v$i" "$i" | jq -r .digest) || fail "push $repo:v$i"
  if ((i % 2 == 0)); then
    echo "$repo v$i $d" >>"$TEST_TMP/victims.txt"
  fi
done

# gc_verify : `ferry verify` (bounded); 0 when it read everything and every
# drift line names a tag in broken.txt (an image whose layer the source lost).
gc_verify() {
  timeout 120 "$(ferry_bin)" verify -c "$TEST_TMP/verify.yaml" >"$TEST_TMP/verify.out" 2>"$TEST_TMP/verify.err" || true
  grep -Eq '^verified [0-9]+ tags across [0-9]+ destinations' "$TEST_TMP/verify.err" || {
    why="verify: $(tail -n 2 "$TEST_TMP/verify.err")"
    return 1
  }
  awk 'NR == FNR { broken[$1 ":" $2] = 1; next } !($1 == "drift" && ($3 in broken))' \
    "$TEST_TMP/broken.txt" "$TEST_TMP/verify.out" >"$TEST_TMP/drift.out"
  [[ ! -s "$TEST_TMP/drift.out" ]] || {
    why="verify: $(wc -l <"$TEST_TMP/drift.out") drift, e.g. $(head -n 2 "$TEST_TMP/drift.out")"
    return 1
  }
}
: >"$TEST_TMP/broken.txt"
wait_until 60 gc_verify || fail "the first $initial images did not replicate in 60 s: $why"
note "phase 1: $initial images replicated"

# The pusher: a new image every 0.3 s ("REPO TAG DIGEST" in pushed.txt).
cat >"$TEST_TMP/pusher.sh" <<'SH'
n=0
while [ ! -e "$2.stop" ]; do
  repo="gc/app$((n % 4))"
  d=$(python3 "$FIXTUREGEN" push --registry "$1" --repo "$repo" --tag "p$n" --seed "gc-p$n" \
    --base-seed "gc-base-$((n % 2))" --base-layers 1 --base-layer-size 96K --layers 1 --layer-size 32K \
    --compact | jq -r .digest) && echo "$repo p$n $d" >>"$2.txt"
  n=$((n + 1))
  sleep 0.3
done
SH
# The sweeper, in turns: push an image to gc/race and delete its own layer at
# once (broken.txt: "REPO TAG DIGEST LAYER"), or push one and delete its manifest
# at once; and each turn delete one older image's manifest (a victim of phase
# 1, later one in three of the pusher's, at least 10 pushes old). Deleted
# manifests go to deleted.txt ("REPO TAG DIGEST eph|old"), failed deletes to
# errors.txt.
cat >"$TEST_TMP/sweeper.sh" <<'SH'
src=$1 dir=$2
i=0 k=0 j=1
del() { # KIND REPO REF : DELETE, 202 wanted
  code=$(curl -s -o /dev/null -w '%{http_code}' -X DELETE "http://$src/v2/$2/$1/$3")
  [ "$code" = 202 ] || { echo "DELETE $2 $1 $3: $code" >>"$dir/errors.txt"; return 1; }
}
while [ ! -e "$dir/sweeper.stop" ]; do
  repo="gc/app$((i % 4))"
  if [ $((i % 2)) = 0 ]; then
    repo=gc/race
    out=$(python3 "$FIXTUREGEN" push --registry "$src" --repo "$repo" --tag "race$i" --seed "gc-race$i" \
      --base-seed "gc-base-$((i % 2))" --base-layers 1 --base-layer-size 96K --layers 1 --layer-size 32K --compact) &&
      layer=$(jq -r '[.blobs[] | select(.media_type | test("layer"))][-1].digest' <<<"$out") &&
      del blobs "$repo" "$layer" && echo "$repo race$i $(jq -r .digest <<<"$out") $layer" >>"$dir/broken.txt"
  else
    d=$(python3 "$FIXTUREGEN" push --registry "$src" --repo "$repo" --tag "eph$i" --seed "gc-eph$i" \
      --base-seed "gc-base-$((i % 2))" --base-layers 1 --base-layer-size 96K --layers 1 --layer-size 32K \
      --compact | jq -r .digest) && del manifests "$repo" "$d" && echo "$repo eph$i $d eph" >>"$dir/deleted.txt"
  fi
  line=$(sed -n "$((k + 1))p" "$dir/victims.txt")
  if [ -n "$line" ]; then
    k=$((k + 1))
  elif [ -e "$dir/pushed.txt" ] && [ $((j + 10)) -le "$(wc -l <"$dir/pushed.txt")" ]; then
    line=$(sed -n "${j}p" "$dir/pushed.txt")
    j=$((j + 3))
  fi
  if [ -n "$line" ]; then
    read -r vrepo vtag vd <<<"$line"
    del manifests "$vrepo" "$vd" && echo "$vrepo $vtag $vd old" >>"$dir/deleted.txt"
  fi
  i=$((i + 1))
  sleep 0.3
done
SH
: >"$TEST_TMP/deleted.txt"
: >"$TEST_TMP/errors.txt"

sample() { # PHASE SECONDS : /v1/status every half second into status.jsonl
  local phase=$1 end=$((SECONDS + $2))
  while ((SECONDS < end)); do
    chaos_api /v1/status | jq -c --arg p "$phase" '{phase: $p, d: [.destinations[] | {name, backlog, in_flight, circuit, failed_total, superseded}]}' \
      >>"$TEST_TMP/status.jsonl" || true
    sleep 0.5
  done
}

start_bg pusher bash "$TEST_TMP/pusher.sh" "$src_ADDR" "$TEST_TMP/pushed"
start_bg sweeper bash "$TEST_TMP/sweeper.sh" "$src_ADDR" "$TEST_TMP"
sweep_start=$SECONDS
sample sweep $((sweep_s / 2))

# The probe: a fresh image in the middle of the sweep.
seq0=$(chaos_api /v1/status | jq .journal.last_seq)
probe_urls=()
for d in "${DESTS[@]}"; do
  url="${d}_URL"
  probe_urls+=("${!url}/v2/fresh/probe/manifests/v1")
done
: >"$TEST_TMP/probe.seen"
start_bg probe python3 "$TEST_TMP/gc_check.py" watch "$TEST_TMP/probe.seen" 60 "${probe_urls[@]}"
push_img fresh/probe v1 gc-probe 0 >"$TEST_TMP/probe.json" || fail "push fresh/probe:v1"
probe_pushed_ms=$(_itest_now_ms)
sample sweep $((sweep_s - (SECONDS - sweep_start)))

touch "$TEST_TMP/pushed.stop" "$TEST_TMP/sweeper.stop"
wait "$pusher_PID" "$sweeper_PID" 2>/dev/null || true
swept=$SECONDS
note "sweep stopped after $((swept - sweep_start)) s"

# Every deleted tag (and its manifest by digest) at every destination.
: >"$TEST_TMP/gone_tags.urls"
: >"$TEST_TMP/gone_digests.urls"
while read -r repo tag digest _; do
  for d in "${DESTS[@]}"; do
    url="${d}_URL"
    echo "${!url}/v2/$repo/manifests/$tag" >>"$TEST_TMP/gone_tags.urls"
    echo "${!url}/v2/$repo/manifests/$digest" >>"$TEST_TMP/gone_digests.urls"
  done
done <"$TEST_TMP/deleted.txt"

why=""
converged_now() {
  local st
  st=$(chaos_api /v1/status) || { why="no /v1/status"; return 1; }
  jq -c '{phase: "converge", d: [.destinations[] | {name, backlog, in_flight, circuit, failed_total, superseded}]}' \
    <<<"$st" >>"$TEST_TMP/status.jsonl"
  jq -e '[.destinations[] | .backlog + .in_flight] | add == 0' <<<"$st" >/dev/null || {
    why="not idle: $(jq -c '[.destinations[] | {name, backlog, in_flight}]' <<<"$st")"
    return 1
  }
  python3 "$TEST_TMP/gc_check.py" present "$TEST_TMP/gone_tags.urls" >"$TEST_TMP/present.out"
  [[ ! -s "$TEST_TMP/present.out" ]] || {
    why="$(wc -l <"$TEST_TMP/present.out") deleted tags still at destinations, e.g. $(head -n 2 "$TEST_TMP/present.out" | tr '\n' ' ')"
    return 1
  }
  gc_verify
}
converged=0
wait_until "$converge_s" converged_now && converged=1
converge_seconds=$((SECONDS - swept))
# The manifests deleted at the source, by digest, within what is left of the bound.
digests_gone() {
  python3 "$TEST_TMP/gc_check.py" present "$TEST_TMP/gone_digests.urls" >"$TEST_TMP/present_digests.out"
  ! grep -q '^200 ' "$TEST_TMP/present_digests.out"
}
wait_until "$((converge_s - (SECONDS - swept) > 1 ? converge_s - (SECONDS - swept) : 1))" digests_gone || true
wait "$probe_PID" 2>/dev/null || true

# Figures.
images_pushed=$((initial + $(wc -l <"$TEST_TMP/pushed.txt") + $(wc -l <"$TEST_TMP/broken.txt") +
  $(grep -c ' eph$' "$TEST_TMP/deleted.txt" || true) + 1))
manifests_deleted=$(wc -l <"$TEST_TMP/deleted.txt")
blobs_deleted=$(wc -l <"$TEST_TMP/broken.txt")
delete_errors=$(wc -l <"$TEST_TMP/errors.txt")
status=$(chaos_api /v1/status)
superseded=$(jq '[.destinations[].superseded] | add' <<<"$status")
gone_logged=$(grep -c 'gone at the source dest=' "$TEST_TMP/ferry.log" || true)
left_alone=$(grep -c 'source disagrees, tag left alone dest=' "$TEST_TMP/ferry.log" || true)
circuit_opens=$(grep -c 'circuit open dest=' "$TEST_TMP/ferry.log" || true)
circuit_samples=$(jq -s '[.[] | .d[] | select(.circuit != "closed")] | length' "$TEST_TMP/status.jsonl")
chaos_api /v1/failures >"$TEST_TMP/failures.json"
failed_total=$(jq '.failures | length' "$TEST_TMP/failures.json")
failed_source=$(jq '[.failures[] | select(.last_error // "" | contains("the source cannot give"))] | length' "$TEST_TMP/failures.json")
# FAILED jobs that are not images whose layer the sweeper deleted.
failed_other=$(jq -r '.failures[] | "\(.source_repository // .repository) \(.digest) \(.destination) \(.last_error)"' \
  "$TEST_TMP/failures.json" | awk 'NR == FNR { b[$1 " " $3] = 1; next } !(($1 " " $2) in b)' \
  "$TEST_TMP/broken.txt" - || true)
leftover_digests=$(grep -c '^200 ' "$TEST_TMP/present_digests.out" || true)

# The probe's entry: the first push of fresh/probe:v1 journaled after seq0.
probe_received="" after=$seq0
while [[ -z "$probe_received" ]] && chaos_api "/v1/journal?after=$after&limit=1000" >"$TEST_TMP/journal.page"; do
  jq -c '.entries[]' "$TEST_TMP/journal.page" >>"$TEST_TMP/journal.jsonl"
  [[ "$(jq '.entries | length' "$TEST_TMP/journal.page")" != 0 ]] || break
  probe_received=$(jq -r '[.entries[] | select(.repository == "fresh/probe" and .tag == "v1" and .action == "push")][0].received // empty' \
    "$TEST_TMP/journal.page")
  after=$(jq '.entries[-1].seq' "$TEST_TMP/journal.page")
done
probe_seen=$(cut -d' ' -f2 "$TEST_TMP/probe.seen" | sort -n | tail -n 1)
probe_at=$(wc -l <"$TEST_TMP/probe.seen")
probe_ms=never probe_push_ms=never
if ((probe_at == ${#DESTS[@]})); then
  probe_push_ms=$((probe_seen - probe_pushed_ms))
  if [[ -n "$probe_received" ]]; then
    probe_ms=$((probe_seen - $(date -d "$probe_received" +%s%3N)))
  fi
fi

figure "gc initial=$initial sweep_seconds=$sweep_s images_pushed=$images_pushed manifests_deleted=$manifests_deleted blobs_deleted=$blobs_deleted delete_errors=$delete_errors"
figure "gc superseded=$superseded gone_at_the_source_logged=$gone_logged tag_left_alone_logged=$left_alone failed=$failed_total failed_source_cannot_give=$failed_source (of $((blobs_deleted * ${#DESTS[@]})) race jobs) circuit_opens=$circuit_opens circuit_not_closed_samples=$circuit_samples"
figure "gc probe_latency_ms=$probe_ms (from its journal entry; from the end of its push: $probe_push_ms) converged=$converged converge_seconds_after_sweep=$converge_seconds deleted_manifests_left_by_digest=$leftover_digests"

violations=()
((manifests_deleted > 0 && blobs_deleted > 0)) || violations+=("the sweeper deleted $manifests_deleted manifests and $blobs_deleted blobs: the scenario proved little")
((circuit_opens == 0 && circuit_samples == 0)) ||
  violations+=("a circuit opened ($circuit_opens log lines, $circuit_samples samples): $(grep -m 2 'circuit open dest=' "$TEST_TMP/ferry.log" | tr '\n' ' ')")
if ((probe_at < ${#DESTS[@]})); then
  violations+=("fresh/probe:v1 reached $probe_at of ${#DESTS[@]} destinations in 60 s (journal entry: ${probe_received:-none})")
elif [[ "$probe_ms" == never ]]; then
  violations+=("fresh/probe:v1 has no push entry in the journal after seq $seq0")
elif ((probe_ms >= 5000)); then
  violations+=("fresh/probe:v1 took $probe_ms ms from its journal entry to every destination (5000 allowed)")
fi
((converged)) || violations+=("no convergence within $converge_s s of the sweep's end: $why")
((leftover_digests == 0)) ||
  violations+=("$leftover_digests manifests deleted at the source are still at destinations by digest, e.g. $(grep -m 2 '^200 ' "$TEST_TMP/present_digests.out" | tr '\n' ' ')")
[[ -z "$failed_other" ]] || violations+=("FAILED jobs for images the source can give: $(head -n 3 <<<"$failed_other" | tr '\n' ' ')")
if ((${#violations[@]} > 0)); then
  for v in "${violations[@]}"; do
    note "violation: $v"
  done
  fail "${violations[0]}$( ((${#violations[@]} > 1)) && echo " (and $((${#violations[@]} - 1)) more, above)")"
fi
chaos_row "a retention sweep at the source for $sweep_s s while $images_pushed images were pushed to ${#DESTS[@]} destinations: $manifests_deleted manifests deleted (some before they were replicated), $blobs_deleted layers deleted right after their push (garbage collection racing replication)" \
  "**pass**: no circuit opened ($circuit_opens opens, $circuit_samples samples not closed); a push made during the sweep was at all ${#DESTS[@]} destinations $probe_ms ms after its journal entry (bound 5,000); every destination converged to what the source holds $converge_seconds s after the sweep ($leftover_digests deleted manifests left by digest); $failed_source jobs whose layer was gone ended FAILED naming the source, $superseded SUPERSEDED, no other FAILED job"
pass "gc: $images_pushed images, $manifests_deleted manifests and $blobs_deleted layers deleted at the source; no circuit opened, probe in $probe_ms ms, converged $converge_seconds s after the sweep"
