#!/usr/bin/env bash
# The cluster's journal (journal/journal_js.c) on a real NATS JetStream
# cluster of 3 servers: the C checks of tests/unit/journal/cluster_nats.c
# (entries de-duplicated across two nodes, tag states, fences raised by
# compare-and-set from racing nodes, job status, node heartbeats, what stays
# on a node), then one server killed with -9 and the survivors checked: what
# was written is all there (3 replicas), and appends, raises and beats still
# succeed; then with a second one down too, opening the shared work waits
# for the quorum to come back.
set -euo pipefail
source "$(dirname "$0")/nats_lib.sh"

bin="$FERRY_BUILD_DIR/cluster_journal_nats"
[[ -x "$bin" ]] || fail "$bin is not built"

nats_cluster_start 3
export NATS_URLS FERRY_TEST_PREFIX="ferrytest$$_$RANDOM"

"$bin" >"$TEST_TMP/checks.out" 2>&1 || { cat "$TEST_TMP/checks.out" >&2; fail "cluster journal checks failed"; }
grep -q "PASSED" "$TEST_TMP/checks.out" || fail "no cmocka summary: $(tail -n 3 "$TEST_TMP/checks.out")"

# One server down: the stream and the buckets have 3 replicas, 2 remain.
nats_server_kill 2
"$bin" --survivor >"$TEST_TMP/survivor.out" 2>&1 || { cat "$TEST_TMP/survivor.out" >&2; fail "the journal did not survive a server killed with -9"; }

# A node that opens its shared work while the servers have no quorum (a
# leader election: a server restarted with it) waits for them, rather than
# fail and exit: server 3 goes too, and comes back 4 s later.
mkdir -p "$TEST_TMP/ww"
start_bg workwait "$bin" --work-wait "$TEST_TMP/ww"
ww_ready() { [[ -e "$TEST_TMP/ww/ready" ]]; }
wait_until 30 ww_ready || fail "the work-wait node did not open its journal: $(cat "$TEST_TMP/workwait.log")"
nats_server_kill 3
touch "$TEST_TMP/ww/go"
sleep 4
nats_server_restart 3
wait "$workwait_PID" || fail "opening the shared work without a quorum failed: $(cat "$TEST_TMP/workwait.log")"
opened=$(grep -o "opened rc=0 after [0-9]* ms" "$TEST_TMP/workwait.log") || fail "no answer: $(cat "$TEST_TMP/workwait.log")"

pass "cluster journal: dedup, tag states, fences, jobs, node beats on 3 NATS servers; one killed, nothing lost; the shared work $opened without a quorum"
