"""``eraselab compare RUN_A RUN_B``: the nightly regression check, with paired tests.

    eraselab compare runs/nightly-2024-05-01 runs/nightly-2024-05-02          # exit 1 on regressions
    eraselab compare runs/a runs/b --json                                      # one JSON object

Every metric of every group in both runs is tested (images paired by prompt, sample and seed
where the runs share them), with Benjamini-Hochberg over all tests (bench/metrics.py, the same
code ``eraselab report --compare`` uses). Exit 0 when no regression is found (changes in the good
direction are listed, not failures), 1 when at least one is. Runs of two differently named suites
are refused unless ``--any-suites``: their groups rarely mean the same thing.
"""

from __future__ import annotations

import json
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("compare", help="compare two runs (regression check, paired tests)",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("run_a", type=Path, metavar="RUN_A", help="the reference run folder")
    p.add_argument("run_b", type=Path, metavar="RUN_B", help="the run to check")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--any-suites", action="store_true",
                   help="compare runs of differently named suites (only their shared groups)")
    p.set_defaults(handler=run)


def run(args) -> int:
    from bench.metrics import format_comparison
    from bench.rundir import compare_runs

    result, notes = compare_runs(args.run_a, args.run_b, any_suites=args.any_suites)
    if args.json:
        print(json.dumps({"run_a": str(args.run_a), "run_b": str(args.run_b), "notes": notes,
                          **result.to_dict()}, default=str))
    else:
        for note in notes:
            print(f"note: {note}")
        print(format_comparison(result, str(args.run_a), str(args.run_b)))
    return 1 if result.regressions else 0
