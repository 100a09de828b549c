#!/usr/bin/env bash
# Ordering: tag t is pushed to A (a big, slow image), then B, then C within a
# second, while `ferry serve` replicates from the registry's notifications to
# two destinations. A watcher polling t at every destination never sees it go
# back in journal order (A after B, B after C), and t ends at C everywhere.
# A was superseded, not merely beaten: its job at each destination ends
# SUPERSEDED in the journal, the watchers never see A at t, and no tag PUT
# reaches a destination once it holds C (its access log), however long A's
# copy runs on. Then the same with a kill -9 of ferry in the middle.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require_ferry
FERRY=$(ferry_bin)

port=$(free_port)
registry_start src --notify "http://127.0.0.1:$port/v1/events/src"
registry_start d1
registry_start d2
cat >"$TEST_TMP/ferry.yaml" <<YAML
data_dir: $TEST_TMP/data
listen: 127.0.0.1:$port
poll_interval: 0
registries:
  src: { url: "http://$src_ADDR", poll: false }
  d1: { url: "http://$d1_ADDR" }
  d2: { url: "http://$d2_ADDR" }
rules:
  - { name: all, source: src, destinations: [{ registry: d1 }, { registry: d2 }] }
YAML
ferry_serve_start ferry "$TEST_TMP/ferry.yaml" "$port"

# watch NAME ADDR REPO: append t's digest at ADDR to NAME.seen whenever it changes.
cat >"$TEST_TMP/watch.sh" <<'SH'
out=$1; url=$2; last=""
end=$((SECONDS + 120))
while [ $SECONDS -lt $end ] && [ ! -e "$out.stop" ]; do
  d=$(curl -s -I -H 'Accept: application/vnd.oci.image.manifest.v1+json' "$url" |
      tr -d '\r' | awk 'tolower($1)=="docker-content-digest:" {print $2}')
  if [ -n "$d" ] && [ "$d" != "$last" ]; then echo "$d" >>"$out.seen"; last=$d; fi
  sleep 0.02
done
SH

# job_state DEST REPO DIGEST : the journal's status of that job (empty if none).
job_state() {
  "$FERRY" journal -c "$TEST_TMP/ferry.yaml" jobs --dest "$1" --json 2>/dev/null |
    jq -r --arg r "$2" --arg d "$3" 'select(.repository == $r and .digest == $d) | .state'
}

round() { # NAME REPO [kill]
  local name=$1 repo=$2 kill=${3:-}
  local watch_pids=()
  start_bg "w1$name" bash "$TEST_TMP/watch.sh" "$TEST_TMP/$name.d1" "$d1_URL/v2/$repo/manifests/t"
  start_bg "w2$name" bash "$TEST_TMP/watch.sh" "$TEST_TMP/$name.d2" "$d2_URL/v2/$repo/manifests/t"
  fixturegen push --registry "$src_ADDR" --repo "$repo" --tag t --seed "$name-a" --layers 1 --layer-size 150M --compact >"$TEST_TMP/$name.a.json"
  fixturegen push --registry "$src_ADDR" --repo "$repo" --tag t --seed "$name-b" --layers 1 --layer-size 20K --compact >"$TEST_TMP/$name.b.json"
  if [ -n "$kill" ]; then
    kill -KILL "$ferry_PID"
    wait "$ferry_PID" 2>/dev/null || true
    ferry_serve_start ferry "$TEST_TMP/ferry.yaml" "$port"
  fi
  fixturegen push --registry "$src_ADDR" --repo "$repo" --tag t --seed "$name-c" --layers 1 --layer-size 20K --compact >"$TEST_TMP/$name.c.json"
  local a b c
  a=$(jq -r .digest "$TEST_TMP/$name.a.json")
  b=$(jq -r .digest "$TEST_TMP/$name.b.json")
  c=$(jq -r .digest "$TEST_TMP/$name.c.json")
  for d in d1 d2; do
    wait_until 90 bash -c "tail -n 1 $TEST_TMP/$name.$d.seen 2>/dev/null | grep -qx $c" ||
      fail "$name: $d never reached C (seen: $(tr '\n' ' ' <"$TEST_TMP/$name.$d.seen" 2>/dev/null))"
  done
  # Tag PUTs each destination served by the time it held C.
  sleep 0.5
  local puts_d1 puts_d2
  puts_d1=$(registry_count_requests d1 PUT "/v2/$repo/manifests/t" '2..')
  puts_d2=$(registry_count_requests d2 PUT "/v2/$repo/manifests/t" '2..')
  # A's job ends, and ends SUPERSEDED, at both destinations.
  local d state=""
  for d in d1 d2; do
    local end=$((SECONDS + 60))
    while state=$(job_state "$d" "$repo" "$a") && [[ "$state" != SUPERSEDED && "$state" != COMPLETE &&
      "$state" != FAILED && $SECONDS -lt $end ]]; do
      sleep 0.2
    done
    assert_eq "$state" SUPERSEDED "$name: the state of A's job at $d"
  done
  # Then no tag PUT came after C (A's copy ended after C landed), then stop watching.
  sleep 1
  assert_eq "$(registry_count_requests d1 PUT "/v2/$repo/manifests/t" '2..')" "$puts_d1" "$name: tag PUTs at d1 after C"
  assert_eq "$(registry_count_requests d2 PUT "/v2/$repo/manifests/t" '2..')" "$puts_d2" "$name: tag PUTs at d2 after C"
  touch "$TEST_TMP/$name.d1.stop" "$TEST_TMP/$name.d2.stop"
  for d in d1 d2; do
    seen=$(sed -e "s/$a/A/; s/$b/B/; s/$c/C/" "$TEST_TMP/$name.$d.seen" | tr '\n' ' ')
    note "$name $d saw: $seen"
    # A superseded never holds the tag; B may, before C.
    case "$seen" in
      "C " | "B C ") ;;
      *) fail "$name: $d's tag held A, moved backwards or ended wrong: $seen" ;;
    esac
  done
}

round plain ord/plain
pass "A superseded at both destinations; the tag never moved backwards and ends at C"
round killed ord/killed kill
pass "the same across a kill -9 of ferry serve"
