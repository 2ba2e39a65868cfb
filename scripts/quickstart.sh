#!/usr/bin/env bash
# sluice's main job on its embedded defaults, from a fresh machine: installs
# the one build prerequisite (protoc, which the etcd client's build needs)
# when it is missing, then serves examples/quickstart.yaml — no Consul,
# etcd or Kubernetes needed. Extra arguments go to `sluice serve`.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v protoc >/dev/null 2>&1; then
  echo "installing protobuf-compiler (needed to build the etcd client)"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq protobuf-compiler >/dev/null
fi

exec cargo run --release -- serve --rules examples/quickstart.yaml "$@"
