#!/usr/bin/env python3
"""Reads `cargo bench --no-run --message-format=json-render-diagnostics` on stdin and prints each
built benchmark as `<executable> <package directory>`: what `just bench` runs, from the directory
cargo would run it in. Standard library only."""

import json
import os
import sys


def main() -> int:
    found = 0
    for line in sys.stdin:
        try:
            message = json.loads(line)
        except json.JSONDecodeError:
            continue
        target = message.get("target") or {}
        if message.get("reason") == "compiler-artifact" and message.get("executable") and "bench" in target.get("kind", []):
            print(message["executable"], os.path.dirname(message["manifest_path"]))
            found += 1
    if not found:
        print("cargo reported no benchmark executable", file=sys.stderr)
    return 0 if found else 1


if __name__ == "__main__":
    sys.exit(main())
