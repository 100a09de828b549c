#!/usr/bin/env bash
# The chaos scenario "crash" in its bounded form (chaos/run.sh crash --short, at
# most 2 minutes): kill -9 of ferry serve during pushes; converges, no tag moves backwards,
# no FAILED job (in the journal's job records and in /v1/failures).
# See chaos/scenarios/crash.sh; `chaos/run.sh crash` runs the full one.
# labels: heavy
set -euo pipefail
exec bash "$(dirname "$0")/../../chaos/run.sh" crash --short
