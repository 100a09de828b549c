#!/usr/bin/env bash
# A source that sends webhooks (`webhooks: true`) costs a poll round
# O(repositories) requests, not O(tags), and the reconcile sweep still finds
# a move no webhook reported. No webhook is ever delivered here: the test
# plays a source whose notifications were all lost.
#
# 1. reconcile_interval 720h. The first round sweeps (HEADs every tag) and
#    everything replicates; then, once no sweep is owed and no job is left,
#    three more rounds list every repository and HEAD no tag the journal
#    knows (counted in the source's access log); a new name pushed meanwhile
#    is HEADed and replicated.
# 2. reconcile_interval 4s, started again on the same journal. After its
#    first round, b:v1 is moved at the source: the sweep finds it and the
#    destination follows within the interval plus a few rounds. Over 9
#    rounds (two intervals or more) every known tag is HEADed at least once
#    and at most three times: spread over the interval, not every round.
#
# Which rounds may HEAD a known tag, besides the first: a repository's
# scheduled sweep, at its own point in every reconcile_interval
# (poller_reconcile_due()), and the sweep it is owed after one that did not
# look at everything. With 1h, the points of a, b and c came at :15:57,
# :34:32 and :28:20 past every hour, and a run whose rounds 3 to 6 spanned
# one failed (got 2: b's tags); 720h, the most the config takes, leaves one
# point in 30 days. An owed sweep follows a round that failed something:
# the rounds measured start after two that did not.
# shellcheck disable=SC2154 # NAME_ADDR, NAME_URL are set by registry_start
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
require_ferry

registry_start src
registry_start dst
push() { # REPO TAG SEED : prints the digest
  fixturegen push --registry "$src_ADDR" --repo "$1" --tag "$2" --seed "$3" --layers 1 \
    --layer-size 4K --compact | jq -r .digest
}
declare -A want=()
want[a:v1]=$(push a v1 1)
want[a:v2]=$(push a v2 2)
want[b:v1]=$(push b v1 3)
want[b:v2]=$(push b v2 4)
want[c:v1]=$(push c v1 5)
KNOWN='/v2/(a|b|c)/manifests/v[12]' # the five tags above, as request paths

port=$(free_port)
write_config() { # RECONCILE_INTERVAL
  cat >"$TEST_TMP/ferry.yaml" <<YAML
data_dir: $TEST_TMP/data
listen: 127.0.0.1:$port
poll_interval: 1s
reconcile_interval: $1
registries:
  src: { url: "http://$src_ADDR", webhooks: true }
  dst: { url: "http://$dst_ADDR" }
rules:
  - { name: all, source: src, destinations: [{ registry: dst }] }
YAML
}
rounds() { grep -c 'poll round done' "$TEST_TMP/$1.log" || true; }
# rounds_clean NAME FROM TO : rounds FROM to TO are done, and none of them
# failed anything that leaves a sweep owed: a failed listing, HEAD, journal
# read or append (each counted in errors=; a tag 404 and the request budget,
# the other causes, do not occur here), or a poll memo it could not read or
# write (the next round sweeps every repository).
rounds_clean() {
  awk -v from="$2" -v to="$3" '
    / poll round done rounds=/ {
      r = $0; sub(/.* rounds=/, "", r); r += 0
      e = $0; sub(/.* errors=/, "", e); e += 0
      if (r == from - 1) { base = e; memo = 0 }
      if (r == to) { done = 1; exit }
      next
    }
    /poll memo .* failed/ { memo = 1 }
    END { exit !(done && e == base + 0 && !memo) }' "$TEST_TMP/$1.log"
}
wait_rounds() { # NAME N : waits until the Nth round of that serve is done
  # shellcheck disable=SC2317 # called through wait_until
  _enough() { (($(rounds "$1") >= $2)); }
  wait_until 40 _enough "$1" "$2" || fail "$1: no $2 poll rounds in 40 s: $(tail -n 5 "$TEST_TMP/$1.log")"
}
heads() { registry_count_requests src HEAD "$1" '' 'ferry.*'; }
lists() { registry_count_requests src GET '/v2/[abc]/tags/list.*' '' 'ferry.*'; }
at_dst() { [[ "$(skopeo_raw "$dst_ADDR/$1" 2>/dev/null | digest_of)" == "$2" ]]; }
# settled NAME : the last round done, the 3rd or later, and the one before
# it failed nothing (so it swept nothing owed, and owes nothing to the
# next), and the engine has no job left (a job HEADs its tag at the
# source before it moves the destination's): sets n0 to that round.
settled() {
  local n backlog
  n=$(rounds "$1")
  ((n >= 3)) && rounds_clean "$1" $((n - 1)) "$n" || return 1
  backlog=$(curl -sf "http://127.0.0.1:$port/v1/status" |
    jq -r '.destinations[] | select(.name == "dst") | .backlog') || return 1
  [[ "$backlog" == 0 ]] || return 1
  n0=$n
}

# ---- 1: a round lists, and HEADs only names the journal does not know
write_config 720h
FERRY_LOG_LEVEL=info ferry_serve_start one "$TEST_TMP/ferry.yaml" "$port"
wait_rounds one 1
for t in "${!want[@]}"; do
  wait_until 30 at_dst "$t" "${want[$t]}" || fail "$t not replicated by the first round's sweep"
done
first=$(heads "$KNOWN")
((first >= 5)) || fail "the first round HEADed $first of the 5 tags: it must sweep everything"
status=$(curl -sf "http://127.0.0.1:$port/v1/status") || fail "GET /v1/status"
jq -e '.sources[] | select(.name == "src") | .webhooks == true and (.swept_to | type == "string")' \
  <<<"$status" >/dev/null || fail "/v1/status: src's webhooks and swept_to: $(jq -c '.sources' <<<"$status")"
# A window in which a round failed may hold an owed sweep: measured again.
for window in 1 2 3; do
  wait_until 40 settled one || fail "no round after the 3rd with the one before it clean and no job left: $(
    grep -E 'warn|poll round done' "$TEST_TMP/one.log" | tail -n 5)"
  sleep 0.3 # the access log line comes as the handler returns
  h0=$(heads "$KNOWN") l0=$(lists)
  wait_rounds one $((n0 + 3))
  sleep 0.3
  n1=$(rounds one) h1=$(heads "$KNOWN") l1=$(lists)
  rounds_clean one "$n0" "$n1" && break
  note "rounds $n0 to $n1: a round failed, a sweep may be owed: measuring again"
  ((window < 3)) || fail "a round failed in each of 3 windows: $(grep warn "$TEST_TMP/one.log" | tail -n 5)"
done
note "rounds $n0 to $n1: $((h1 - h0)) HEADs of known tags, $((l1 - l0)) tag listings"
assert_eq "$((h1 - h0))" 0 "HEADs of tags the journal knows in rounds $n0 to $n1 (webhooks: true)"
# Each round lists the 3 repositories; a round may straddle either count.
(((l1 - l0) >= 3 * (n1 - n0 - 1))) ||
  fail "rounds $n0 to $n1 listed the 3 repositories only $((l1 - l0)) times: the rounds did not poll"
pass "a round of a webhooks source lists its repositories and HEADs no known tag"

v3=$(push a v3 6)
wait_until 15 at_dst a:v3 "$v3" || fail "a:v3, a new name, was not replicated within 15 s"
(($(heads '/v2/a/manifests/v3') >= 1)) || fail "a:v3 replicated without a HEAD of it"
if rounds_clean one "$n0" "$(rounds one)"; then
  assert_eq "$(heads "$KNOWN")" "$h1" "HEADs of the known tags after a:v3 came"
else
  note "a round failed after a:v3 came: a sweep may be owed, the HEADs of known tags are not counted"
fi
pass "a new name is found by the listing, HEADed and replicated"
stop_bg one

# ---- 2: the reconcile sweep finds a move no webhook reported
write_config 4s
FERRY_LOG_LEVEL=info ferry_serve_start two "$TEST_TMP/ferry.yaml" "$port"
wait_rounds two 2
moved=$(push b v1 99)
[[ "$moved" != "${want[b:v1]}" ]] || fail "the new b:v1 has the old digest"
t0=$(date +%s%N)
wait_until 20 at_dst b:v1 "$moved" || fail "the move of b:v1 was not replicated within 20 s (reconcile_interval 4s)"
note "figure: the move of b:v1 reached the destination after $((($(date +%s%N) - t0) / 1000000)) ms (reconcile_interval 4s, poll_interval 1s)"
pass "the reconcile sweep found a move no webhook reported"

n=$(rounds two)
sleep 0.3
s0=$(date +%s%N)
declare -A before=()
for t in a/manifests/v1 a/manifests/v2 a/manifests/v3 b/manifests/v1 b/manifests/v2 c/manifests/v1; do
  before[$t]=$(heads "/v2/$t")
done
wait_rounds two $((n + 9))
sleep 0.3
span=$((($(date +%s%N) - s0) / 1000000))
((span >= 8000)) || fail "9 rounds took $span ms, less than two intervals"
# A sweep that failed (in round n or later) is owed again at the next round:
# one HEAD more of each of its tags.
owed=0
rounds_clean two "$n" "$(rounds two)" || {
  owed=1
  note "a round failed: one owed sweep more of each tag is allowed"
}
for t in "${!before[@]}"; do
  d=$(($(heads "/v2/$t") - before[$t]))
  note "$t: HEADed $d times in 9 rounds ($span ms)"
  ((d >= 1)) || fail "$t was not swept once in $span ms (reconcile_interval 4s)"
  ((d <= span / 4000 + 1 + owed)) || fail "$t was HEADed $d times in $span ms: more than once per reconcile_interval"
done
pass "every known tag is swept once per reconcile_interval, not every round"
