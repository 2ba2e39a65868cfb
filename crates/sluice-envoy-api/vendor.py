#!/usr/bin/env python3
"""Vendors the .proto files sluice-envoy-api compiles.

They are copied from the source of the envoy-types crate in the cargo
registry (its `proto/` directory, a collection of Envoy's data-plane-api and
the protos it imports), keeping only the files listed in roots.txt (those
defining the Envoy types sluice names) and their transitive imports. Each
file keeps its import path, so all of them sit under one include root,
`proto/`. google/protobuf/*.proto are not copied: protox ships them.

Run it (from anywhere) once cargo has downloaded envoy-types (ENVOY_TYPES
below, e.g. `cargo fetch` with it as a dependency): it replaces proto/ but
for proto/README.md and prints how many files it copied.
"""

import glob
import os
import re
import shutil
import sys

ENVOY_TYPES = "envoy-types-0.7.7"

HERE = os.path.dirname(os.path.abspath(__file__))


def roots():
    with open(os.path.join(HERE, "roots.txt"), encoding="utf-8") as f:
        return [l.strip() for l in f if l.strip() and not l.startswith("#")]


IMPORT = re.compile(r'^\s*import\s+(?:public\s+|weak\s+)?"([^"]+)"\s*;', re.M)
OUT = os.path.join(HERE, "proto")
KEEP = {"README.md", "LICENSE"}
# The include roots inside envoy-types' proto/ (one per collected repository).
INCLUDE_ROOTS = [
    "cel-spec/proto", "client_model", "data-plane-api", "googleapis",
    "opentelemetry-proto", "protoc-gen-validate", "ratelimit", "xds",
]


def registry_source():
    home = os.environ.get("CARGO_HOME", os.path.expanduser("~/.cargo"))
    found = sorted(glob.glob(os.path.join(home, "registry/src/*", ENVOY_TYPES)))
    if not found:
        sys.exit(f"{ENVOY_TYPES} is not in {home}/registry/src; run `cargo fetch` first")
    return os.path.join(found[0], "proto")


def resolve(src, name):
    for root in INCLUDE_ROOTS:
        path = os.path.join(src, root, name)
        if os.path.isfile(path):
            return path
    sys.exit(f"cannot find {name} under {src}")


def main():
    src = registry_source()
    seen = {}
    todo = roots()
    while todo:
        name = todo.pop()
        if name in seen or name.startswith("google/protobuf/"):
            continue
        path = resolve(src, name)
        seen[name] = path
        with open(path, encoding="utf-8") as f:
            todo.extend(IMPORT.findall(f.read()))

    for entry in sorted(os.listdir(OUT)) if os.path.isdir(OUT) else []:
        if entry not in KEEP:
            full = os.path.join(OUT, entry)
            shutil.rmtree(full) if os.path.isdir(full) else os.remove(full)
    for name in sorted(seen):
        dest = os.path.join(OUT, name)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.copyfile(seen[name], dest)
    shutil.copyfile(os.path.join(os.path.dirname(src), "LICENSE"), os.path.join(OUT, "LICENSE"))
    print(f"vendored {len(seen)} files from {src}")


if __name__ == "__main__":
    main()
