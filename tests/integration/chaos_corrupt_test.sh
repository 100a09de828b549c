#!/usr/bin/env bash
# The chaos scenario "corrupt" in its bounded form (chaos/run.sh corrupt --short, at
# most 2 minutes): a flipped byte in a source layer; jobs FAIL naming it (API and journal job
# records, none COMPLETE), no manifest PUT while corrupt (access logs), no spool file left for
# the blob, nothing corrupt lands, retry completes.
# See chaos/scenarios/corrupt.sh; `chaos/run.sh corrupt` runs the full one.
# labels: heavy
set -euo pipefail
exec bash "$(dirname "$0")/../../chaos/run.sh" corrupt --short
