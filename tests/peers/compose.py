#!/usr/bin/env python3
"""Reads a docker-compose file the way Compose does (YAML 1.1, with `<<` merge keys) and
prints it as one JSON object on stdout, for tests/tests/compose.rs to check.

Usage: compose.py docker-compose.yml
"""

import json
import sys

import yaml


def main(path):
    with open(path) as f:
        doc = yaml.safe_load(f)
    if not isinstance(doc, dict) or not isinstance(doc.get("services"), dict):
        print(f"{path}: no services", file=sys.stderr)
        return 2
    json.dump(doc, sys.stdout, default=str)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
