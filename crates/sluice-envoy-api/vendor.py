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
for proto/README.md and prints how many files it copied. With `--check` it
changes nothing and fails if proto/ is not exactly the closure of
roots.txt, or (when envoy-types is in the registry) differs from it;
scripts/test.sh runs that.
"""

import filecmp
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
    """envoy-types' proto/ in the cargo registry, or None."""
    home = os.environ.get("CARGO_HOME", os.path.expanduser("~/.cargo"))
    found = sorted(glob.glob(os.path.join(home, "registry/src/*", ENVOY_TYPES)))
    return os.path.join(found[0], "proto") if found else None


def upstream(src, name):
    for root in INCLUDE_ROOTS:
        path = os.path.join(src, root, name)
        if os.path.isfile(path):
            return path
    return None


def closure(lookup):
    """{import path: file} for the roots and everything they import."""
    seen = {}
    todo = roots()
    while todo:
        name = todo.pop()
        if name in seen or name.startswith("google/protobuf/"):
            continue
        path = lookup(name)
        if path is None:
            sys.exit(f"cannot find {name}")
        seen[name] = path
        with open(path, encoding="utf-8") as f:
            todo.extend(IMPORT.findall(f.read()))
    return seen


def vendored():
    found = set()
    for dirpath, _, files in os.walk(OUT):
        for f in files:
            if f.endswith(".proto"):
                found.add(os.path.relpath(os.path.join(dirpath, f), OUT))
    return found


def check(src):
    """proto/ holds exactly the closure of roots.txt and, when envoy-types
    is in the registry, the same bytes as its files."""
    local = os.path.join
    need = closure(lambda n: local(OUT, n) if os.path.isfile(local(OUT, n)) else None)
    extra = sorted(vendored() - set(need))
    bad = []
    if src is not None:
        bad = [n for n in sorted(need) if not filecmp.cmp(need[n], upstream(src, n) or "/", shallow=False)]
    for n in extra:
        print(f"proto/{n}: not imported by any file in roots.txt")
    for n in bad:
        print(f"proto/{n}: differs from {ENVOY_TYPES}")
    if extra or bad:
        sys.exit("proto/ is out of date: run crates/sluice-envoy-api/vendor.py")
    where = f"; same bytes as {ENVOY_TYPES}" if src else f" ({ENVOY_TYPES} not in the registry to compare)"
    print(f"proto/: {len(need)} files, the closure of roots.txt{where}")


def main():
    src = registry_source()
    if sys.argv[1:] == ["--check"]:
        return check(src)
    if src is None:
        sys.exit(f"{ENVOY_TYPES} is not in the cargo registry; `cargo fetch` a crate that depends on it")
    seen = closure(lambda n: upstream(src, n))
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
