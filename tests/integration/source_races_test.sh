#!/usr/bin/env bash
# Races between what a job saw and what another job did since, with a
# destination that was down while the source moved:
#  1. The source moves t A -> B -> A while d2 is down. When d2 is back, its
#     job for the last A finds the tag already at A; that job must still be
#     ordered with the older B job (through the tag's gate and fence), or B
#     lands last and d2 ends where the source is not.
#  2. The source deletes D while d1 is down, then pushes the same image back
#     under t; the push's job finds t at d1 already and is done. The delete's
#     retry, later, must look at the source again (not reuse its first look),
#     behind the repository's gate, and find D there: d1 keeps t.
#  3. The source drops tag t but keeps its manifest under u. The delete of t
#     must not delete the manifest at the destinations (u would go too);
#     Distribution 2.8 cannot delete a tag alone, so t stays there and the
#     entry says why.
# Each ends with every destination tag equal to the source's, but for 3.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require_ferry
FERRY=$(ferry_bin)

TOKEN=races-$RANDOM$RANDOM
export FERRY_WEBHOOK_TOKEN=$TOKEN
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
retry: { attempts: 8, base: 8s, max: 8s }
registries:
  src: { url: "http://$src_ADDR", poll: false }
  d1: { url: "http://$d1_ADDR", stall_timeout: 2s }
  d2: { url: "http://$d2_ADDR", stall_timeout: 2s }
rules:
  - { name: all, source: src, deletes: true, destinations: [{ registry: d1 }, { registry: d2 }] }
YAML
ferry_serve_start ferry "$TEST_TMP/ferry.yaml" "$port"

post() { event_post "$API" "$TOKEN" "$@"; } # ID ACTION REPO DIGEST TAG
at() { # REGISTRY REPO REF -> digest, or 404
  local url="${1}_URL"
  manifest_ref_digest "${!url}" "$2" "$3"
}
holds() { [[ "$(at "$1" "$2" "$3")" == "$4" ]]; }
push() { # REPO SEED -> digest
  fixturegen push --registry "$src_ADDR" --repo "$1" --tag t --seed "$2" --layers 1 --layer-size 20K --compact | jq -r .digest
}
drained() {
  curl -sf "$API/v1/status" | jq -e '.journal.cursor == .journal.last_seq and
    all(.destinations[]; .backlog == 0)' >/dev/null
}

# 1. A -> B -> A at the source while d2 is down.
A=$(push one a)
post one-1 push one "$A" t
wait_until 20 holds d1 one t "$A" || fail "d1 never got A"
wait_until 20 holds d2 one t "$A" || fail "d2 never got A"
registry_stop d2
B=$(push one b)
post one-2 push one "$B" t
wait_until 20 holds d1 one t "$B" || fail "d1 never got B"
push one a >/dev/null
post one-3 push one "$A" t
wait_until 20 holds d1 one t "$A" || fail "d1 never got A back"
registry_restart d2
wait_until 60 drained || fail "the journal did not drain"
for d in d1 d2; do
  assert_eq "$(at "$d" one t)" "$A" "$d's t after A, B, A at the source (B is $B)"
done
pass "a destination back after A -> B -> A ends at A"

# 2. The source deletes D while d1 is down, then has it back under t.
D=$(push two d)
post two-1 push two "$D" t
wait_until 20 holds d1 two t "$D" || fail "d1 never got D"
wait_until 20 holds d2 two t "$D" || fail "d2 never got D"
registry_stop d1
code=$(curl -s -o /dev/null -w '%{http_code}' -X DELETE "$src_URL/v2/two/manifests/$D")
assert_eq "$code" 202 "DELETE at the source"
post two-2 delete two "$D" ""
wait_until 20 bash -c "[ \"\$(curl -s -I -H 'Accept: $ACCEPT' $d2_URL/v2/two/manifests/$D | head -n 1 | awk '{print \$2}')\" = 404 ]" ||
  fail "the real delete did not reach d2"
# The delete's first attempt at d1 has looked at the source (404) and failed;
# its retry is 4-8 s away. Meanwhile d1 is back and the source has D again.
wait_until 30 grep -q "job failed, retrying dest=d1 repo=two digest=$D" "$TEST_TMP/ferry.log" ||
  fail "the delete at d1 never failed while d1 was down"
registry_restart d1
push two d >/dev/null
post two-3 push two "$D" t
wait_until 60 drained || fail "the journal did not drain"
for d in d1 d2; do
  assert_eq "$(at "$d" two t)" "$D" "$d's t after the source deleted D and pushed it back"
done
pass "a delete retried after the source has the image back deletes nothing"

# 3. The source drops t but keeps the manifest under u. Distribution 2.8 has
# no tag delete: drop the tag from its storage, as a registry that can would.
E=$(push three e)
fixturegen push --registry "$src_ADDR" --repo three --tag u --seed e --layers 1 --layer-size 20K --compact >/dev/null
post three-1 push three "$E" t
post three-2 push three "$E" u
for d in d1 d2; do
  wait_until 20 holds "$d" three u "$E" || fail "$d never got u"
  wait_until 20 holds "$d" three t "$E" || fail "$d never got t"
done
rm -r "$src_STORAGE/docker/registry/v2/repositories/three/_manifests/tags/t"
assert_eq "$(at src three t)" 404 "t at the source after it was dropped"
post three-3 delete three "" t
wait_until 60 drained || fail "the journal did not drain"
for d in d1 d2; do
  assert_eq "$(at "$d" three u)" "$E" "$d's u (the manifest must stay: the source holds it)"
  assert_eq "$(at "$d" three t)" "$E" "$d's t (Distribution 2.8 cannot delete a tag alone)"
done
why=$(curl -s "$API/v1/journal?limit=1000" | jq -r '.entries[] | select(.repository == "three" and .action == "delete") | .ignored')
case "$why" in
  *"cannot delete a tag alone"*) ;;
  *) fail "the tag delete's entry does not say why it changed nothing: '$why'" ;;
esac
pass "a tag dropped at the source deletes no manifest it still holds; a registry without tag deletes keeps the tag, and the entry says why"
