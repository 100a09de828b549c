#!/usr/bin/env bash
# The chaos scenario "journal" in its bounded form (chaos/run.sh journal --short, at
# most 2 minutes): kill -9 during heavy webhook ingest; every acknowledged event (of ingest_load
# and of a redelivering client) checked by id: journaled exactly once, in its client's order
# of acknowledgement, seqs consecutive; the checker is first shown doctored journals it refuses.
# See chaos/scenarios/journal.sh; `chaos/run.sh journal` runs the full one.
# labels: heavy
set -euo pipefail
exec bash "$(dirname "$0")/../../chaos/run.sh" journal --short
