#!/usr/bin/env bash
# sluice-core decides what is served and does no I/O. This checks what it
# is built from (cargo tree) and what its code names:
# - no registry, HTTP, gRPC, runtime-helper, admin or Lua crate anywhere in
#   its dependency tree (its Envoy messages come from
#   crates/sluice-envoy-api, which generates no gRPC services; see
#   docs/architecture.md, "Crates"), and it asks tokio for `sync` only;
# - its source names no tonic, hyper, runtime or I/O API.
set -euo pipefail
cd "$(dirname "$0")/.."

fail=0
tree="$(cargo tree -p sluice-core -e normal --prefix none --locked | sed 's/ .*//' | sort -u)"
for crate in kube kube-client kube-runtime etcd-client reqwest axum mlua prometheus-client \
  tonic tonic-prost hyper h2 tower tokio-util tokio-stream futures; do
  if grep -qx "$crate" <<<"$tree"; then
    echo "sluice-core depends on $crate:"; cargo tree -p sluice-core -e normal -i "$crate" --locked
    fail=1
  fi
done

features="$(cargo tree -p sluice-core -e features --depth 2 --prefix none --locked | grep -o 'tokio feature "[a-z-]*"' | sort -u || true)"
if [ -n "$features" ] && [ "$features" != 'tokio feature "sync"' ]; then
  echo "sluice-core asks tokio for more than sync:"; echo "$features"; fail=1
fi

# A line under a `core-io:` comment is an allowed, documented exception.
io_api='(^|[^A-Za-z0-9_])(tonic|hyper|axum|reqwest|mlua|etcd_client|kube)::|tokio::(spawn|task|net|fs|time|runtime|process|signal)|std::(fs|net::Tcp|process)::|std::(thread::spawn|time::(Instant|SystemTime)::now)'
found="$(find crates/sluice-core/src -name '*.rs' ! -path '*/tests/*' ! -name 'tests.rs' ! -name '*_tests.rs' -print0 |
  xargs -0 awk -v re="$io_api" 'FNR == 1 { prev = "" }
    $0 ~ re && prev !~ /core-io:/ { print FILENAME ":" FNR ": " $0 }
    { prev = $0 }')"
if [ -n "$found" ]; then
  echo "$found"; echo "sluice-core code uses an I/O, runtime or clock API (above)"; fail=1
fi

[ "$fail" -eq 0 ] && echo "sluice-core: no I/O dependencies"
exit "$fail"
