#!/usr/bin/env bash
# Fails when any C file of Ferry differs from what .clang-format makes of it.
set -euo pipefail
top=${1:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$top"
mapfile -t files < <(git ls-files '*.c' '*.h' 2>/dev/null || find common journal replicator chaos tests -name '*.[ch]')
[ ${#files[@]} -gt 0 ] || { echo "format: no C files found"; exit 1; }
bad=0
for f in "${files[@]}"; do
  [ -f "$f" ] || continue
  if ! clang-format --dry-run -Werror "$f" >/dev/null 2>&1; then
    echo "format: $f is not clang-format clean (run: clang-format -i $f)"
    bad=1
  fi
done
echo "format: checked ${#files[@]} files"
exit $bad
