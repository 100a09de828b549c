#!/usr/bin/env bash
# The cluster's journal (journal/journal_js.c) on a real NATS JetStream
# cluster of 3 servers: the C checks of tests/unit/journal/cluster_nats.c
# (entries de-duplicated across two nodes, tag states, fences raised by
# compare-and-set from racing nodes, job status, node heartbeats, what stays
# on a node), then one server killed with -9 and the survivors checked: what
# was written is all there (3 replicas), and appends, raises and beats still
# succeed.
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

pass "cluster journal: dedup, tag states, fences, jobs, node beats on 3 NATS servers; one killed, nothing lost"
