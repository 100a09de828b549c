#!/usr/bin/env bash
# Messages are hints, the source registry is the truth: webhook events that
# are late, duplicated, redelivered with a new id, out of order or forged
# never move a destination tag to a digest the source tag no longer names,
# and a delete propagates only when the source agrees. Every event is posted
# by hand (the source is not polled), to two destinations, while watchers
# sample each destination tag every 20 ms and record every change.
#   1. history A, B; both push events in both orders, duplicated and copied
#      with fresh ids, all after the fact: the tag only ever holds B
#   2. history A, B, A; the three events in all 6 orders: only ever A
#   3. interleaved with the pushes, plus late copies of t->A: A then B, never
#      back to A
#   4. a forged push naming a digest of the repository that the tag does not
#      name: the tag never names it
#   5. forged deletes (by digest, by tag) are ignored, with a reason in the
#      journal; a real delete propagates
#   6. a late t->A journaled while a destination is frozen, then kill -9 of
#      ferry: after the restart the tag never went back to A
# SCENARIOS="1 5" runs only those (default: all), then `ferry verify`.
# shellcheck disable=SC2154 # NAME_ADDR, NAME_URL, NAME_PID are set by registry_start and ferry_serve_start
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
require_ferry
FERRY=$(ferry_bin)
SCENARIOS=${SCENARIOS:-1 2 3 4 5 6}
TOKEN=truth-token-$RANDOM$RANDOM
export FERRY_WEBHOOK_TOKEN=$TOKEN
EVENTS_CT=application/vnd.docker.distribution.events.v1+json
ACCEPT='application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json'

port=$(free_port)
API=http://127.0.0.1:$port
registry_start src --delete
registry_start d1 --delete
registry_start d2 --delete
cat >"$TEST_TMP/ferry.yaml" <<YAML
data_dir: $TEST_TMP/data
listen: 127.0.0.1:$port
webhook_token_env: FERRY_WEBHOOK_TOKEN
poll_interval: 0
registries:
  src: { url: "http://$src_ADDR", poll: false }
  d1: { url: "http://$d1_ADDR" }
  d2: { url: "http://$d2_ADDR" }
rules:
  - { name: all, source: src, deletes: true, destinations: [{ registry: d1 }, { registry: d2 }] }
YAML
ferry_serve_start ferry "$TEST_TMP/ferry.yaml" "$port"
mkdir -p "$TEST_TMP/img" "$TEST_TMP/seen" "$TEST_TMP/ev"

# watch.py READY SECONDS ACCEPT FILE=URL... : HEAD every URL (one keep-alive
# connection each, Accept: ACCEPT) every 20 ms for at most SECONDS, and append
# to FILE the digest it names whenever that changes ("-" when it answers 404
# after naming one). READY is made after the first round.
cat >"$TEST_TMP/watch.py" <<'PY'
import http.client, sys, time
ready, end, accept = sys.argv[1], time.time() + float(sys.argv[2]), sys.argv[3]
targets = []
for spec in sys.argv[4:]:
    out, url = spec.split("=", 1)
    hostport, path = url.split("://", 1)[1].split("/", 1)
    host, port = hostport.rsplit(":", 1)
    targets.append({"out": out, "host": host, "port": int(port), "path": "/" + path, "conn": None, "last": "-"})
first = True
while time.time() < end:
    for t in targets:
        try:
            if t["conn"] is None:
                t["conn"] = http.client.HTTPConnection(t["host"], t["port"], timeout=0.5)
            t["conn"].request("HEAD", t["path"], headers={"Accept": accept, "User-Agent": "ferry-itest-watch"})
            r = t["conn"].getresponse()
            r.read()
            status, digest = r.status, r.getheader("Docker-Content-Digest") or ""
        except Exception:
            if t["conn"] is not None:
                t["conn"].close()
            t["conn"] = None
            continue
        value = digest if status == 200 and digest else "-" if status == 404 else None
        if value is not None and value != t["last"]:
            with open(t["out"], "a") as f:
                f.write(value + "\n")
            t["last"] = value
    if first:
        open(ready, "w").close()
        first = False
    time.sleep(0.02)
PY

declare -A LETTER=() # digest -> the image's name in this test (A, B, X...)

# push REPO TAG NAME : push image NAME of REPO (seed REPO-NAME: the same name
# is the same digest) to the source as REPO:TAG
push() {
  local repo=$1 tag=$2 name=$3 f
  f=$(img "$repo" "$name")
  fixturegen push --registry "$src_ADDR" --repo "$repo" --tag "$tag" --seed "$repo-$name" \
    --layers 1 --layer-size 20K --compact >"$f.new" || fail "fixturegen push $repo:$tag ($name)"
  if [[ -s "$f" ]]; then
    assert_eq "$(jq -r .digest "$f.new")" "$(jq -r .digest "$f")" "$repo: pushing $name again gives its digest"
  fi
  mv "$f.new" "$f"
  LETTER[$(jq -r .digest "$f")]=$name
}
img() { echo "$TEST_TMP/img/${1//\//_}.$2.json"; }
digest() { jq -r .digest "$(img "$1" "$2")"; } # REPO NAME

# post ID ACTION REPO DIGEST TAG MEDIA_TYPE SIZE [WANT] : post one
# Distribution event ('' leaves a target field out) and check the answer:
# WANT accepted (default) or duplicate.
post() {
  local id=$1 action=$2 repo=$3 dig=$4 tag=$5 mt=$6 size=$7 want=${8:-accepted} f code
  f="$TEST_TMP/ev/${id//\//_}.json"
  event_envelope "$f" "$id" "$action" "$repo" "$dig" "$tag" "$mt" "$size"
  code=$(curl -s -o "$f.resp" -w '%{http_code}' -X POST -H "Content-Type: $EVENTS_CT" \
    -H "Authorization: Bearer $TOKEN" --data-binary "@$f" "$API/v1/events/src" || true)
  assert_eq "$code" 200 "posting $id ($(cat "$f.resp" 2>/dev/null))"
  if [[ "$want" == duplicate ]]; then
    assert_eq "$(jq -c '{accepted, duplicates}' "$f.resp")" '{"accepted":0,"duplicates":1}' "$id posted again"
  else
    assert_eq "$(jq -c '{accepted, duplicates}' "$f.resp")" '{"accepted":1,"duplicates":0}' "$id journaled"
  fi
}

# post_push ID REPO TAG NAME [WANT] : a push event "REPO:TAG is image NAME"
post_push() {
  local f
  f=$(img "$2" "$4")
  post "$1" push "$2" "$(jq -r .digest "$f")" "$3" "$(jq -r .media_type "$f")" "$(jq -r .size "$f")" "${5:-}"
}

# at DEST REPO REF : the digest DEST's REPO:REF names ("404" when absent)
at() {
  local url="${1}_URL"
  manifest_ref_digest "${!url}" "$2" "$3"
}
holds() { [[ "$(at "$1" "$2" "$3")" == "$4" ]]; } # DEST REPO REF DIGEST
both_hold() { holds d1 "$1" "$2" "$3" && holds d2 "$1" "$2" "$3"; }
# wait_both_hold REPO TAG NAME : until both destinations hold image NAME as
# REPO:TAG, and both watchers (REPO:TAG must be watched) have seen it
wait_both_hold() {
  local dig
  dig=$(digest "$1" "$3")
  wait_until 30 both_hold "$1" "$2" "$dig" ||
    fail "$1:$2 is not $3 at both destinations (d1: $(at d1 "$1" "$2"), d2: $(at d2 "$1" "$2"))"
  wait_until 10 last_seen_is d1 "$1" "$2" "$dig" || fail "the d1 watcher did not see $1:$2 at $3"
  wait_until 10 last_seen_is d2 "$1" "$2" "$dig" || fail "the d2 watcher did not see $1:$2 at $3"
}

# Drained: every journal entry dispatched and every job finished, twice in a
# row 0.3 s apart with no new entry in between (a superseded job journals
# the source's value: that entry must be done too).
drained_once() {
  curl -sf "$API/v1/status" -o "$TEST_TMP/status.json" || return 1
  jq -e '.journal.cursor == .journal.last_seq and all(.destinations[]; .backlog == 0)' \
    "$TEST_TMP/status.json" >/dev/null
}
drained() {
  local seq
  drained_once || return 1
  seq=$(jq .journal.last_seq "$TEST_TMP/status.json")
  sleep 0.3
  drained_once && [[ "$(jq .journal.last_seq "$TEST_TMP/status.json")" == "$seq" ]]
}
wait_drained() {
  wait_until 60 drained ||
    fail "the engine did not drain in 60 s: $(jq -c '{journal, d: [.destinations[] | {name, backlog, in_flight, failed, last_error}]}' "$TEST_TMP/status.json")"
}

# Watchers: one per destination per scenario (a frozen registry only slows
# its own), each sampling the given REPO:TAG targets.
seen_file() { echo "$TEST_TMP/seen/$1.${2//\//_}.$3"; } # DEST REPO TAG
watch_start() { # SCENARIO REPO:TAG...
  local sc=$1 d target url specs
  shift
  for d in d1 d2; do
    url="${d}_URL"
    specs=()
    for target in "$@"; do
      specs+=("$(seen_file "$d" "${target%:*}" "${target##*:}")=${!url}/v2/${target%:*}/manifests/${target##*:}")
    done
    start_bg "watch_${sc}_$d" python3 "$TEST_TMP/watch.py" "$TEST_TMP/seen/$sc.$d.ready" 150 "$ACCEPT" "${specs[@]}"
  done
  # shellcheck disable=SC2317 # called through wait_until
  watchers_ready() { [[ -e "$TEST_TMP/seen/$sc.d1.ready" && -e "$TEST_TMP/seen/$sc.d2.ready" ]]; }
  wait_until 10 watchers_ready || fail "scenario $sc: the watchers did not start"
}
watch_stop() { # SCENARIO
  stop_bg "watch_${1}_d1"
  stop_bg "watch_${1}_d2"
}

# seen DEST REPO TAG : what the watcher saw, as image names ("A B")
seen() {
  local f d out=()
  f=$(seen_file "$1" "$2" "$3")
  [[ -s "$f" ]] || return 0
  while read -r d; do
    out+=("${LETTER[$d]:-$d}")
  done <"$f"
  echo "${out[*]}"
}
last_seen_is() { [[ -s "$(seen_file "$1" "$2" "$3")" && "$(tail -n 1 "$(seen_file "$1" "$2" "$3")")" == "$4" ]]; }

# check REPO TAG FINAL ALLOWED... : at both destinations REPO:TAG is image
# FINAL now, and the watcher saw exactly one of the ALLOWED histories
check() {
  local repo=$1 tag=$2 final=$3 d s now ok h
  shift 3
  for d in d1 d2; do
    now=$(at "$d" "$repo" "$tag")
    wait_until 5 last_seen_is "$d" "$repo" "$tag" "$now" || true # the watcher's latest sample
    s=$(seen "$d" "$repo" "$tag")
    note "$d $repo:$tag held: $s"
    [[ "$now" == "$(digest "$repo" "$final")" ]] ||
      fail "$d $repo:$tag ends at ${LETTER[$now]:-$now}, not $final (it held: $s)"
    ok=0
    for h in "$@"; do
      [[ "$s" == "$h" ]] && ok=1
    done
    ((ok)) || fail "$d $repo:$tag held '$s' (allowed: $(printf "'%s' " "$@"))"
  done
}

journal_json() { curl -sf "$API/v1/journal?limit=1000" -o "$TEST_TMP/journal.json" || fail "GET /v1/journal"; }

# ---------------------------------------------------------------- scenarios

# 1. The source already says B when the events arrive, in either order, each
# delivered twice with its id and once more with a fresh id.
scenario_1() {
  local p repo x
  for p in ab ba; do
    push "s1/$p" t A
    push "s1/$p" t B
  done
  watch_start 1 s1/ab:t s1/ba:t
  for p in ab ba; do
    repo=s1/$p
    for x in ${p:0:1} ${p:1:1}; do
      post_push "s1-$p-$x" "$repo" t "${x^^}"
      post_push "s1-$p-$x" "$repo" t "${x^^}" duplicate
    done
    for x in ${p:0:1} ${p:1:1}; do
      post_push "s1-$p-$x-again" "$repo" t "${x^^}"
    done
  done
  wait_drained
  check s1/ab t B "B"
  check s1/ba t B "B"
  watch_stop 1
  # The last event said A: the source's B was journaled after it.
  journal_json
  jq -e --arg d "$(digest s1/ba B)" '[.entries[] | select(.repository == "s1/ba" and .tag == "t")] | last |
    .digest == $d and .action == "push" and .origin == "source"' "$TEST_TMP/journal.json" >/dev/null ||
    fail "s1/ba: the newest journal entry of t is not the source's B (origin \"source\"): $(jq -c '[.entries[] | select(.repository == "s1/ba")]' "$TEST_TMP/journal.json")"
  pass "1: late, duplicated and redelivered events of an older push never moved the tag off B"
}

# 2. History A, B, A: the three events in every order.
scenario_2() {
  local i repo k order orders=("1 2 3" "1 3 2" "2 1 3" "2 3 1" "3 1 2" "3 2 1") targets=()
  local names=(- A B A)
  for i in 0 1 2 3 4 5; do
    repo=s2/o$i
    push "$repo" t A
    push "$repo" t B
    push "$repo" t A
    targets+=("$repo:t")
  done
  watch_start 2 "${targets[@]}"
  for i in 0 1 2 3 4 5; do
    order=${orders[$i]}
    for k in $order; do
      post_push "s2-o$i-e$k" "s2/o$i" t "${names[$k]}"
    done
  done
  wait_drained
  for i in 0 1 2 3 4 5; do
    check "s2/o$i" t A "A"
  done
  watch_stop 2
  pass "2: history A, B, A in all 6 event orders: the tag only ever held A"
}

# 3. Events interleaved with the pushes, and late copies of t->A.
scenario_3() {
  local repo=s3/late
  watch_start 3 "$repo:t"
  push "$repo" t A
  post_push s3-a "$repo" t A
  wait_both_hold "$repo" t A
  push "$repo" t B
  post_push s3-a-late "$repo" t A # redelivered with a new id, before t->B
  post_push s3-b "$repo" t B
  wait_both_hold "$repo" t B
  wait_drained
  post_push s3-a-later "$repo" t A # after B is everywhere
  post_push s3-a "$repo" t A duplicate
  wait_drained
  check "$repo" t B "A B"
  watch_stop 3
  pass "3: interleaved and late events: A then B, never back to A"
}

# 4. A forged push: a digest the repository holds, but not under that tag.
scenario_4() {
  local repo=s4/forged
  watch_start 4 "$repo:t" "$repo:other"
  push "$repo" t A
  post_push s4-a "$repo" t A
  wait_both_hold "$repo" t A
  push "$repo" other X
  post_push s4-forged "$repo" t X
  wait_drained
  post_push s4-other "$repo" other X # the genuine event of X
  wait_both_hold "$repo" other X
  wait_drained
  check "$repo" t A "A"
  check "$repo" other X "X"
  watch_stop 4
  pass "4: a forged push naming another image of the repository never moved the tag"
}

# 5. Forged deletes are ignored (with a reason in the journal); a real one
# propagates.
scenario_5() {
  local x y d entry repo ref r want now bad
  watch_start 5 s5/digest:t s5/tag:t
  push s5/digest t X
  push s5/tag t Y
  post_push s5-x s5/digest t X
  post_push s5-y s5/tag t Y
  wait_both_hold s5/digest t X
  wait_both_hold s5/tag t Y
  x=$(digest s5/digest X)
  y=$(digest s5/tag Y)
  post s5-forged-digest delete s5/digest "$x" "" "" ""
  post s5-forged-tag delete s5/tag "" t "" ""
  wait_drained
  bad=()
  for d in d1 d2; do
    for ref in "s5/digest t $x" "s5/digest $x $x" "s5/tag t $y" "s5/tag $y $y"; do
      read -r repo r want <<<"$ref"
      now=$(at "$d" "$repo" "$r")
      [[ "$r" == sha256:* ]] && r="@${LETTER[$r]}" || r=":$r"
      [[ "$now" == "$want" ]] || bad+=("$d $repo$r is ${LETTER[$now]:-$now};")
    done
  done
  ((${#bad[@]} == 0)) || fail "forged deletes (by digest in s5/digest, by tag in s5/tag) deleted: ${bad[*]}"
  check s5/digest t X "X"
  check s5/tag t Y "Y"
  watch_stop 5
  journal_json
  for repo in s5/digest s5/tag; do
    entry=$(jq -c --arg r "$repo" '[.entries[] | select(.repository == $r and .action == "delete")] | last' "$TEST_TMP/journal.json")
    jq -e '.ignored | type == "string" and length > 0' <<<"$entry" >/dev/null ||
      fail "$repo: the forged delete's journal entry has no \"ignored\" reason: $entry"
    note "$repo forged delete: $entry"
  done
  pass "5: forged deletes by digest and by tag deleted nothing, and the journal says why"

  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' -X DELETE "$src_URL/v2/s5/digest/manifests/$x")
  assert_eq "$code" 202 "deleted s5/digest@X at the source"
  post s5-real-delete delete s5/digest "$x" "" "" ""
  # shellcheck disable=SC2317 # called through wait_until
  gone_everywhere() { [[ "$(at d1 s5/digest "$x")" == 404 && "$(at d2 s5/digest "$x")" == 404 ]]; }
  wait_until 30 gone_everywhere ||
    fail "s5/digest@X still at a destination after a real delete (d1: $(at d1 s5/digest "$x"), d2: $(at d2 s5/digest "$x"))"
  wait_drained
  for d in d1 d2; do
    assert_eq "$(at "$d" s5/digest t)" 404 "$d s5/digest:t went with its manifest"
  done
  journal_json
  entry=$(jq -c '[.entries[] | select(.repository == "s5/digest" and .action == "delete")] | last' "$TEST_TMP/journal.json")
  jq -e '.ignored == null' <<<"$entry" >/dev/null || fail "the real delete was marked ignored: $entry"
  pass "5: a delete the source agrees with propagated to both destinations"
}

# 6. A late t->A journaled while d1 is frozen, then kill -9 of ferry.
scenario_6() {
  local repo=s6/crash
  push "$repo" t A
  push "$repo" t B
  watch_start 6 "$repo:t"
  post_push s6-b "$repo" t B
  wait_both_hold "$repo" t B
  wait_drained
  on_exit "kill -CONT $d1_PID 2>/dev/null || true"
  kill -STOP "$d1_PID"
  post_push s6-a-late "$repo" t A # answered 200: it is on disk
  # Let d2 finish with it and d1's work hang (not required: a hint for timing).
  # shellcheck disable=SC2317 # called through wait_until
  d1_stuck() {
    curl -sf "$API/v1/status" -o "$TEST_TMP/status6.json" &&
      jq -e '(.destinations[] | select(.name == "d2") | .backlog == 0) and
             (.destinations[] | select(.name == "d1") | .backlog > 0)' "$TEST_TMP/status6.json" >/dev/null
  }
  wait_until 10 d1_stuck ||
    note "scenario 6: d2 not done or d1 not busy before the kill: $(jq -c '[.destinations[] | {name, backlog, in_flight}]' "$TEST_TMP/status6.json" 2>/dev/null)"
  kill -KILL "$ferry_PID"
  wait "$ferry_PID" 2>/dev/null || true
  kill -CONT "$d1_PID"
  ferry_serve_start ferry "$TEST_TMP/ferry.yaml" "$port"
  wait_drained
  check "$repo" t B "B"
  watch_stop 6
  pass "6: a late event journaled before a kill -9 (one destination frozen) never moved the tag back"
}

for s in $SCENARIOS; do
  note "scenario $s"
  "scenario_$s"
done

curl -sf "$API/v1/status" -o "$TEST_TMP/status.json" || fail "GET /v1/status"
jq -e 'all(.destinations[]; .failed == 0)' "$TEST_TMP/status.json" >/dev/null ||
  fail "FAILED jobs: $(curl -s "$API/v1/failures")"
rc=0
"$FERRY" verify -c "$TEST_TMP/ferry.yaml" >"$TEST_TMP/verify.out" 2>&1 || rc=$?
assert_eq "$rc" 0 "ferry verify ($(head -c 2000 "$TEST_TMP/verify.out"))"
pass "ferry verify: the destinations match the source"
