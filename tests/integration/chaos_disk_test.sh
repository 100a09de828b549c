#!/usr/bin/env bash
# The chaos scenario "disk" in its bounded form (chaos/run.sh disk --short):
# the spool's filesystem (a tmpfs the scenario mounts) is full; Ferry says so,
# streams past the spool, loses and corrupts nothing, and uses the spool again
# once space returns: the source's access log shows 2 reads of the big layer while
# full, 1 once it has room. See chaos/scenarios/disk.sh.
# It needs to mount a tmpfs (root with CAP_SYS_ADMIN): elsewhere ctest reports
# it skipped (exit 77), never passed.
# labels: heavy
set -euo pipefail
probe=$(mktemp -d)
if [[ "$(id -u)" != 0 ]] || ! mount -t tmpfs -o size=1m ferry-chaos-probe "$probe" 2>/dev/null; then
  rmdir "$probe"
  echo "SKIP: cannot mount a tmpfs here (not root, or no CAP_SYS_ADMIN)"
  exit 77
fi
umount "$probe"
rmdir "$probe"
exec bash "$(dirname "$0")/../../chaos/run.sh" disk --short
