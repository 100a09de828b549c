#!/usr/bin/env bash
# The chaos scenario "flaky" in its bounded form (chaos/run.sh flaky --short, at
# most 2 minutes): 503s, resets and 429 bursts at every destination; converges, no FAILED job.
# See chaos/scenarios/flaky.sh; `chaos/run.sh flaky` runs the full one.
# labels: heavy
set -euo pipefail
exec bash "$(dirname "$0")/../../chaos/run.sh" flaky --short
