#!/usr/bin/env python3
"""Validates an SPDX 2.3 JSON document against the official SPDX 2.3 JSON schema.

    spdx_schema.py DOCUMENT.json

The schema is the one PyPI's lib4sbom ships (`lib4sbom/schemas/spdx/2.3-schema.json`, the
`spdx-schema.json` of the SPDX 2.3 specification); the validator is PyPI's jsonschema, with the
draft the schema declares. Every violation is printed as `PATH: MESSAGE`; the exit status is 0
when there is none, 1 when there is any, 2 when the tools or the schema are missing.
"""

import json
import os
import sys


def schema_path():
    try:
        import lib4sbom
    except ImportError:
        sys.exit("spdx_schema.py: missing PyPI package lib4sbom (it ships the SPDX 2.3 schema)")
    path = os.path.join(os.path.dirname(lib4sbom.__file__), "schemas", "spdx", "2.3-schema.json")
    if not os.path.isfile(path):
        sys.exit(f"spdx_schema.py: no SPDX 2.3 schema at {path}")
    return path


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: spdx_schema.py DOCUMENT.json")
    try:
        import jsonschema
    except ImportError:
        sys.exit("spdx_schema.py: missing PyPI package jsonschema")
    with open(schema_path()) as f:
        schema = json.load(f)
    if schema.get("title") != "SPDX 2.3":
        sys.exit(f"spdx_schema.py: the schema is {schema.get('title')!r}, not SPDX 2.3")
    with open(sys.argv[1]) as f:
        document = json.load(f)
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    errors = sorted(
        validator_class(schema).iter_errors(document), key=lambda e: list(e.absolute_path)
    )
    for error in errors:
        path = "/".join(str(p) for p in error.absolute_path) or "(document)"
        print(f"{path}: {error.message}")
    if errors:
        sys.exit(1)
    print(f"valid against {schema.get('$id')} ({validator_class.__name__})")


if __name__ == "__main__":
    main()
