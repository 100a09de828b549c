#!/usr/bin/env bash
# The chaos scenario "cluster" in its bounded form (chaos/run.sh cluster
# --short): 3 Ferry nodes on a 3-server NATS JetStream, 4 `kill -9`s of a
# node and 2 of a NATS server during pushes; converges, nothing lost or
# repeated in the journal, no tag moves backwards, no FAILED job.
# See chaos/scenarios/cluster.sh; `chaos/run.sh cluster` runs the full one.
# labels: heavy
set -euo pipefail
exec bash "$(dirname "$0")/../../chaos/run.sh" cluster --short
