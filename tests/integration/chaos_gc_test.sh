#!/usr/bin/env bash
# The chaos scenario "gc" in its bounded form (chaos/run.sh gc --short, at
# most 2 minutes): a retention sweep deletes manifests and layers at the source while images
# are pushed; no circuit opens, a fresh push is replicated within 5 s, the destinations converge.
# See chaos/scenarios/gc.sh; `chaos/run.sh gc` runs the full one.
# labels: heavy
set -euo pipefail
exec bash "$(dirname "$0")/../../chaos/run.sh" gc --short
