#!/usr/bin/env python3
"""Writes the 5 MB rules files docs/benchmarks.md measures `sluice validate`
on ("Validating a 5 MB rules file"): many small entries on one line and in
block style, many services, one long name, millions of bad items.

    python3 scripts/big-rules.py DIR
"""
import os
import sys

MB = 5 * 1024 * 1024


def addr(i):
    return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"


def main(out):
    os.makedirs(out, exist_ok=True)
    path = lambda name: os.path.join(out, name + ".yaml")

    # One line: one service, many endpoints.
    head, tail = "{services: [{name: s, endpoints: [", "]}], listeners: []}\n"
    parts, size = [], 0
    while size < MB - len(head) - len(tail) - 40:
        p = f"{{address: {addr(len(parts))}, port: 8080}}"
        parts.append(p)
        size += len(p) + 2
    open(path("flow"), "w").write(head + ", ".join(parts) + tail)
    print("flow:", len(parts), "endpoints")

    # The same in block style.
    lines, size = ["services:", "  - name: s", "    endpoints:"], 40
    n = 0
    while True:
        e = f"      - address: {addr(n)}\n        port: 8080"
        if size + len(e) + 1 > MB - 20:
            break
        lines.append(e)
        size += len(e) + 1
        n += 1
    lines.append("listeners: []")
    open(path("block"), "w").write("\n".join(lines) + "\n")
    print("block:", n, "endpoints")

    # One line: many services of one endpoint each.
    parts, size = [], 0
    while size < MB - 60:
        k = len(parts)
        p = f"{{name: s{k}, endpoints: [{{address: {addr(k)}, port: 8080}}]}}"
        parts.append(p)
        size += len(p) + 2
    open(path("svcs"), "w").write("{services: [" + ", ".join(parts) + "], listeners: []}\n")
    print("svcs:", len(parts), "services")

    open(path("name"), "w").write("{services: [{name: " + "a" * MB + ", endpoints: []}], listeners: []}\n")
    open(path("ones"), "w").write("services: [" + ",".join(["1"] * (MB // 2 - 10)) + "]\n")
    open(path("empty"), "w").write("services: []\nlisteners: []\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "data")
