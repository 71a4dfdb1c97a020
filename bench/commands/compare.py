"""``eraselab compare RUN_A RUN_B``: flag aggregate differences beyond the bootstrap intervals.

    eraselab compare runs/nightly-2024-05-01 runs/nightly-2024-05-02          # exit 1 on regressions
    eraselab compare runs/a runs/b --json                                      # one JSON object

Exit 0 when no regression is found (changes in the good direction are listed, not failures),
1 when at least one is. Both runs must be finished runs of one suite (both --smoke or neither);
anything else is a one-line error. See bench/runner/compare.py for the rules.
"""

from __future__ import annotations

import json
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("compare", help="compare two runs' aggregates (regression check)",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("run_a", type=Path, metavar="RUN_A", help="the reference run folder")
    p.add_argument("run_b", type=Path, metavar="RUN_B", help="the run to check")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=run)


def run(args) -> int:
    from bench.runner.compare import compare, format_report
    from reports.rundata import check_comparable

    check_comparable(args.run_a, args.run_b)  # finished runs of one suite, or a one-line error
    result = compare(_aggregates(args.run_a), _aggregates(args.run_b))
    if args.json:
        print(json.dumps({"run_a": str(args.run_a), "run_b": str(args.run_b), **result}, default=str))
    else:
        print(format_report(result, str(args.run_a), str(args.run_b)))
    return 1 if result["regressions"] else 0


def _aggregates(run_dir: Path):
    """The run's aggregates; a damaged file (a truncated parquet) is a one-line error."""
    from bench.errors import EraselabError, shorten
    from bench.runner.compare import load_aggregates

    try:
        return load_aggregates(run_dir)
    except EraselabError:
        raise
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a damaged file
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise EraselabError(f"{run_dir / 'aggregates.parquet'}: cannot read parquet "
                            f"({type(exc).__name__}: {shorten(text)}); rerun `eraselab run` on the "
                            f"run folder to rewrite it") from None
