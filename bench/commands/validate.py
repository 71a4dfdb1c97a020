"""`eraselab validate PATH...`: check catalogs and suites without running any model.

A PATH that names no file but a shipped suite (`eraselab validate mini-default`) checks
datasets/suites/NAME.yaml, as `eraselab run NAME` would read it.

Exit 0 when every file is valid; otherwise exit 1 and print one line per problem
(file, concept or key, what was expected). The file kind is read from its contents:
a suite has a `suite:` or `methods:` key, a catalog a `concepts:` key.
"""

from __future__ import annotations

import sys
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("validate", help="check catalog and suite YAML files",
                       description="Check catalogs and suites; one line per problem.")
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="a file, or a shipped suite's name")
    p.set_defaults(handler=run)


def shipped_suite(path: Path) -> Path:
    """``path`` itself, or the shipped suite it names when no such file exists."""
    from bench.core.errors import EraselabError
    from bench.runner.suite import resolve_suite_path
    try:
        return resolve_suite_path(path)
    except EraselabError:  # neither a file nor a shipped suite: reported as a missing file
        return path


def problems_of(path: Path) -> list[str]:
    from bench.core.errors import EraselabError
    from bench.core.yamlio import read_yaml_mapping
    path = shipped_suite(path)
    try:
        raw = read_yaml_mapping(path)
    except EraselabError as exc:
        return [str(exc)]
    if "methods" not in raw and "suite" not in raw:
        from bench.catalog import validate_catalog_file
        return validate_catalog_file(path)
    try:
        from bench.suite import validate_suite_file
    except ImportError:
        return [f"{path}: not a catalog (no 'concepts' key) and suites are not supported yet"]
    return validate_suite_file(path)


def run(args) -> int:
    failed = 0
    for path in args.paths:
        problems = problems_of(path)
        for line in problems:
            print(line, file=sys.stderr)
        if problems:
            failed += 1
        else:
            print(f"{path}: ok")
    return 1 if failed else 0
