"""`eraselab ls {concepts,methods,attacks,detectors}`: list the catalog or a registry without loading models.

    eraselab ls concepts --catalog miniworld --json
    eraselab ls methods
    eraselab ls attacks
"""

from __future__ import annotations

import json


def add_parser(sub) -> None:
    p = sub.add_parser("ls", help="list concepts, methods, attacks or detectors",
                       description="List catalog concepts, registered erasure methods, attacks or scorers.")
    p.add_argument("what", choices=["concepts", "methods", "attacks", "detectors"])
    p.add_argument("--catalog", default="miniworld", help="catalog name or YAML path (concepts)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(handler=run)


def run(args) -> int:
    if args.what == "concepts":
        from bench.catalog import load_catalog
        catalog = load_catalog(args.catalog)
        rows = [c.to_dict() for c in catalog.concepts.values()]
        columns = ["name", "type", "parent", "related", "detector"]
    else:
        registry = _registry(args.what)
        rows = [{"name": e.name, "summary": e.summary, **e.tags} for e in registry.entries()]
        columns = ["name", "summary"]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        _print_table(rows, columns)
    return 0


def _registry(what: str):
    if what == "methods":
        from methods import METHODS
        return METHODS
    if what == "attacks":
        from attacks import ATTACKS
        return ATTACKS
    from detectors import SCORERS
    return SCORERS


def _cell(value) -> str:
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return "" if value is None else str(value)


def _print_table(rows: list[dict], columns: list[str]) -> None:
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip())
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())
