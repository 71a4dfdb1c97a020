"""What an unfinished run has measured so far: detection rates per group from its scored batches.

    python -m benchmarks.partial_run mini-robustness runs/mini-robustness \\
        --out benchmarks/results/mini_robustness_partial.json

A run writes its per-image rows and aggregates only when every batch is done; a study stopped
before that still holds each finished batch's scores (parts/images/*.parquet) and each attack's
finding (attacks/*/found.json). This reads them against the suite's plan: per (concept, probe,
arm) the images scored and the share in which each judge detects the concept (no intervals:
groups are incomplete), plus each finished attack job's seconds and objective before and after, and the wall time from the
run's log.
Measures, asserts nothing. Not a test.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
from pathlib import Path

from benchmarks.results_io import machine, write_result


def main(argv=None) -> int:
    import pandas as pd
    from bench.runner.run import prepare
    from bench.suite import load_suite

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("suite")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    _, _, plan, _, _ = prepare(load_suite(args.suite))
    parts = [pd.read_parquet(f) for f in sorted(glob.glob(str(args.run_dir / "parts" / "images" / "*.parquet")))]
    scores = pd.concat(parts).drop_duplicates("image_id")
    rows = pd.DataFrame(plan.rows).merge(scores[["image_id", "detected", "judge_detected"]], on="image_id")
    for column in ("detected", "judge_detected"):
        rows[column] = rows[column].astype(float)
    rows["probe"] = rows["probe"].fillna("plain target") if "probe" in rows else "plain target"
    rows["arm"] = rows["probe_arm"].fillna(rows["method"]) if "probe_arm" in rows else rows["method"]
    groups = (rows.groupby(["concept", "probe", "arm"])
              .agg(n=("detected", "size"), detected=("detected", "mean"), judge_detected=("judge_detected", "mean"))
              .reset_index())
    jobs = [json.loads(Path(f).read_text()) for f in sorted(glob.glob(str(args.run_dir / "attacks" / "*" / "found.json")))]
    stamps = [line[:19] for f in sorted(glob.glob(str(args.run_dir / "logs" / "*.log")))
              for line in Path(f).read_text().splitlines() if line[:4].isdigit()]
    wall = (datetime.datetime.fromisoformat(stamps[-1]) - datetime.datetime.fromisoformat(stamps[0])).total_seconds() \
        if stamps else float("nan")
    record = {"benchmark": "partial_run", "suite": args.suite, "machine": machine(),
              "measured_at": datetime.datetime.now().isoformat(timespec="seconds"),
              "planned": {"images": len(plan.images), "rows": len(plan.rows), "attack_jobs": len(plan.attacks)},
              "done": {"rows_scored": int(len(rows)), "attack_jobs": len(jobs)},
              "wall_seconds_so_far": round(wall, 1),  # the run's log, first line to last
              "groups": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in g.items()}
                         for g in groups.to_dict("records")],
              "attacks": [{k: j.get(k) for k in ("probe", "arm", "concept", "seed", "prompt", "seconds",
                                                  "objective_before", "objective_after")} for j in jobs]}
    write_result(record, args.out)
    print(json.dumps({"planned": record["planned"], "done": record["done"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
