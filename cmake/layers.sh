#!/usr/bin/env bash
# Ferry's layers, enforced: every quoted #include of the product is
# path-qualified ("registry/registry.h", "common/log.h") and points only at its
# own layer or one below it. The build runs this before compiling anything
# (target ferry_layers), so an include that points up fails the build.
#
#   common/  <-  journal/, replicator/registry/, replicator/config/
#            <-  replicator/replication/  <-  replicator/daemon/  <-  replicator/cli/
#   chaos/ uses only common/; nothing includes tests/ or chaos/.
#
# usage: cmake/layers.sh TOP            check the tree at TOP
#        cmake/layers.sh --self-test TOP  also prove the check refuses an
#                                         upward and an unqualified include
set -euo pipefail

# layer -> the layers its files may include (itself included).
declare -A ALLOWED=(
  [common]="common"
  [journal]="common journal"
  [registry]="common registry"
  [config]="common config"
  [replication]="common journal registry config replication"
  [daemon]="common journal registry config replication daemon"
  [cli]="common journal registry config replication daemon cli"
  [chaos]="common chaos"
)

# layer_of PATH: the layer a source file (relative to the top) belongs to.
layer_of() {
  case "$1" in
    common/*) echo common ;;
    journal/*) echo journal ;;
    chaos/*) echo chaos ;;
    replicator/*/*) local rest=${1#replicator/}; echo "${rest%%/*}" ;;
    *) echo "" ;;
  esac
}

# check TOP: prints one line per bad include; returns 1 if there was one.
check() {
  local top=$1 bad=0 file layer line inc target
  while IFS= read -r file; do
    layer=$(layer_of "$file")
    if [[ -z "$layer" || -z "${ALLOWED[$layer]:-}" ]]; then
      echo "layers: $file is in no layer (put it under common/, journal/ or replicator/<layer>/)"
      bad=1
      continue
    fi
    while IFS= read -r line; do
      inc=${line#*\"}
      inc=${inc%%\"*}
      if [[ "$inc" == "ferry.pb-c.h" && "$layer" == journal ]]; then
        continue # protobuf-c's generated code, the journal's record format
      fi
      if [[ "$inc" != */* ]]; then
        echo "layers: $file includes \"$inc\": includes are path-qualified (\"<layer>/$inc\")"
        bad=1
        continue
      fi
      target=${inc%%/*}
      if [[ " ${ALLOWED[$layer]} " != *" $target "* ]]; then
        echo "layers: $file ($layer) includes \"$inc\" ($target): $layer may include only: ${ALLOWED[$layer]}"
        bad=1
      fi
    done < <(grep -E '^[[:space:]]*#[[:space:]]*include[[:space:]]+"' "$top/$file" || true)
  done < <(cd "$top" && find common journal replicator chaos -path '*/node_modules' -prune -o \
                 -type f \( -name '*.c' -o -name '*.h' \) -print 2>/dev/null | sort)
  return $bad
}

self_test() {
  local t
  t=$(mktemp -d)
  trap 'rm -rf "$t"' RETURN
  mkdir -p "$t/common" "$t/replicator/registry" "$t/replicator/cli"
  printf '#include "common/log.h"\n' >"$t/common/log.c"
  printf '#include "common/log.h"\n#include "registry/http.h"\n' >"$t/replicator/registry/http.c"
  printf '#include "registry/http.h"\n#include "cli/progress.h"\n' >"$t/replicator/cli/progress.c"
  check "$t" >/dev/null || { echo "layers self-test: a clean tree was refused"; return 1; }
  printf '#include "cli/progress.h"\n' >>"$t/replicator/registry/http.c"
  if check "$t" >/dev/null; then echo "layers self-test: an upward include was accepted"; return 1; fi
  printf '#include "registry/http.h"\n' >"$t/replicator/registry/http.c"
  printf '#include "log.h"\n' >>"$t/common/log.c"
  if check "$t" >/dev/null; then echo "layers self-test: an unqualified include was accepted"; return 1; fi
  echo "layers self-test: an upward and an unqualified include are refused"
}

if [[ "${1:-}" == "--self-test" ]]; then
  shift
  self_test
fi
top=${1:-$(cd "$(dirname "$0")/.." && pwd)}
check "$top"
