#!/usr/bin/env bash
# One observation, one entry: a fleet pushed while `ferry serve` takes the
# source's notifications (polling off) is journaled once. Restarted with
# polling on, the poller finds every tag already journaled at the digest it
# sees (the journal's tag state says what was journaled last, whoever
# journaled it) and appends nothing, not even a delete for a journaled tag
# its rules leave out of the listing. Then a tag moved while nothing notifies
# is still found, once.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require_ferry
FERRY=$(ferry_bin)

port=$(free_port)
registry_start src --notify "http://127.0.0.1:$port/v1/events/src"
registry_start dst

write_config() { # POLL
  cat >"$TEST_TMP/ferry.yaml" <<YAML
data_dir: $TEST_TMP/data
listen: 127.0.0.1:$port
poll_interval: 1s
registries:
  src: { url: "http://$src_ADDR", poll: $1 }
  dst: { url: "http://$dst_ADDR" }
rules:
  - { name: all, source: src, tags: ["*", "!dev"], deletes: true, destinations: [{ registry: dst }] }
YAML
}
J() { "$FERRY" journal -c "$TEST_TMP/ferry.yaml" "$@"; }
tagged_entries() { J ls --json | jq -s 'map(select(.tag != null)) | length'; }

export FERRY_LOG_LEVEL=info # the poller logs its rounds
write_config false
ferry_serve_start ferry "$TEST_TMP/ferry.yaml" "$port"

# Six repositories, two tags each, one of them a two-platform index.
for r in 1 2 3 4 5 6; do
  fixturegen push --registry "$src_ADDR" --repo "fleet/r$r" --tag v1 --seed "r$r-1" --layers 1 --layer-size 8K --compact >/dev/null
  fixturegen push --registry "$src_ADDR" --repo "fleet/r$r" --tag v2 --seed "r$r-2" --layers 1 --layer-size 8K --compact \
    $([ "$r" = 1 ] && echo --platforms linux/amd64,linux/arm64) >/dev/null
done
# A tag no rule selects: its notification is answered `ignored` and not
# journaled, and the poller's listing leaves it out too: nothing of it ever
# reaches the journal (not even a delete).
fixturegen push --registry "$src_ADDR" --repo fleet/r1 --tag dev --seed r1-dev --layers 1 --layer-size 8K --compact >/dev/null
wait_until 30 bash -c "[ \$($FERRY journal -c $TEST_TMP/ferry.yaml ls --json | jq -s 'map(select(.tag != null)) | length') -ge 12 ]" ||
  fail "the notifications did not journal the fleet ($(tagged_entries) tagged entries)"
# The dev tag's notification comes last; give it the time to be (wrongly) journaled.
wait_until 10 bash -c "curl -sf http://127.0.0.1:$port/metrics | grep -q '^ferry_webhook_events_total{outcome=\"ignored\"} [1-9]'" ||
  fail "the dev tag's notification was not answered ignored"
before=$(J stats | awk '/last_seq/ {print $2}')
[[ -n "$before" ]] || fail "ferry journal stats printed no last_seq: $(J stats)"
assert_eq "$(tagged_entries)" 12 "one entry per selected pushed tag from the notifications, none for dev"
pass "the fleet is journaled from notifications, once per tag"

# Restart with polling on: three rounds, nothing new.
kill -TERM "$ferry_PID"
wait "$ferry_PID" 2>/dev/null || true
write_config true
ferry_serve_start ferry "$TEST_TMP/ferry.yaml" "$port"
wait_until 30 grep -q "poll round rounds=3 " "$TEST_TMP/ferry.log" ||
  fail "the poller did not finish three rounds: $(grep 'poll round' "$TEST_TMP/ferry.log" | tail -n 2)"
after=$(J stats | awk '/last_seq/ {print $2}')
assert_eq "$after" "$before" "entries appended by the poller for tags the notifications journaled ($(J ls --json --after "$before" | jq -c '[.event_id]' | tr '\n' ' '))"
pass "a restart with polling on appends no entry for what is journaled"

# A tag moved with the notifications lost (the registry's endpoint is gone
# while ferry is down) is found by the poller, once.
kill -TERM "$ferry_PID"
wait "$ferry_PID" 2>/dev/null || true
# Distribution retries a failed notification (and would deliver it once ferry
# is back): restart it without its endpoint, so that nothing notifies.
registry_stop src
python3 -c 'import sys, yaml
c = yaml.safe_load(open(sys.argv[1])); c.pop("notifications", None)
yaml.safe_dump(c, open(sys.argv[1], "w"))' "${_REG_CONFIG[src]}"
registry_restart src
fixturegen push --registry "$src_ADDR" --repo fleet/r2 --tag v1 --seed r2-moved --layers 1 --layer-size 8K --compact >"$TEST_TMP/moved.json"
ferry_serve_start ferry "$TEST_TMP/ferry.yaml" "$port"
moved=$(jq -r .digest "$TEST_TMP/moved.json")
wait_until 30 bash -c "$FERRY journal -c $TEST_TMP/ferry.yaml ls --json --after $before | jq -se --arg d $moved 'any(.digest == \$d)' >/dev/null" ||
  fail "the moved tag was not journaled"
wait_until 30 bash -c "[ \$(grep -c 'poll round rounds=' $TEST_TMP/ferry.log) -ge 6 ]" || fail "no more poll rounds"
assert_eq "$(J ls --json --after "$before" | jq -s --arg d "$moved" 'map(select(.tag == "v1" and .repository == "fleet/r2")) | length')" 1 \
  "entries for the moved tag"
pass "a tag moved while nothing notified is journaled once"
