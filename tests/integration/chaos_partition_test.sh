#!/usr/bin/env bash
# The chaos scenario "partition" in its bounded form (chaos/run.sh partition --short, at
# most 2 minutes): a destination blackholed; the others keep up (a watcher on their tags: each
# tag pushed during the partition there within 2 s), the circuit opens, the backlog drains.
# See chaos/scenarios/partition.sh; `chaos/run.sh partition` runs the full one.
# labels: heavy
set -euo pipefail
exec bash "$(dirname "$0")/../../chaos/run.sh" partition --short
