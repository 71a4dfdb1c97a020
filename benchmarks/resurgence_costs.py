"""What each arm of a finished resurgence run cost: its erasure, its fine-tuning chains, its images.

    python -m benchmarks.resurgence_costs runs/mini-resurgence
    # -> adds "per_arm" to the suite's entry of benchmarks/results/study_speed.json (measured by
    #    python -m benchmarks.study_speed mini-resurgence); prints the table

Read from the run folder only (no model work): erasure seconds from the manifest's edit records
of the arm's start edits and of its later erasures in a sequence; a chain's training seconds are the largest ``seconds`` among its
checkpoints' records (each records the time since its chain started); an arm's generation time
is its share of the run's images times the run's seconds per generated image (images are
counted once per arm, though a step-0 image serves every chain). The original model's row is the
control's. Measures, asserts nothing. Not a test.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks.results_io import RESULTS_DIR, write_result

OUT = RESULTS_DIR / "study_speed.json"


def arm_costs(folder: Path) -> dict:
    import pandas as pd

    manifest = json.loads((folder / "manifest.json").read_text())
    edits = manifest["edits"]
    rows = pd.read_parquet(folder / "results.parquet")
    studied = rows[rows["resurgence"].notna()]
    stages = manifest["seconds_per_stage"]
    per_image = stages.get("generate", 0.0) / max(1, manifest["counts"]["images"])
    out = {}
    for arm, g in studied.groupby("base_arm", sort=False):
        start = g[g["step"].fillna(-1) == 0]["edit_id"].unique()
        erase = sum(float(edits[e]["seconds"] or 0) for e in start if e in edits)
        chains = {}
        ft = g[g["resurgence"].isin(["finetune", "relearn"]) & (g["step"].fillna(0) > 0)]
        for (chain, concept), c in ft.groupby(["chain", "concept"]):
            chains.setdefault(chain, 0.0)
            chains[chain] += max(float(edits[e]["seconds"] or 0) for e in c["edit_id"].unique() if e in edits)
        later = g[(g["resurgence"] == "sequential") & (g["step"].fillna(0) > 1)]["edit_id"].unique()
        sequence = sum(float(edits[e]["seconds"] or 0) for e in later if e in edits)
        images = int(g["image_id"].nunique())
        out[arm] = {"erase_s": round(erase, 1), "sequence_erase_s": round(sequence, 1),
                    "finetune_s": {k: round(v, 1) for k, v in chains.items()},
                    "finetune_total_s": round(sum(chains.values()), 1), "images": images,
                    "generate_s_estimate": round(images * per_image, 1)}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    args = parser.parse_args(argv)
    folder = Path(args.run_dir)
    costs = arm_costs(folder)
    suite = json.loads((folder / "manifest.json").read_text())["suite"]
    try:
        record = json.loads(OUT.read_text())
    except (OSError, ValueError):
        record = {"benchmark": "study_speed", "suites": {}}
    record["suites"].setdefault(suite, {})["per_arm"] = costs
    write_result(record, OUT)
    for arm, c in costs.items():
        print(f"{arm:16s} erase {c['erase_s']:6.1f} s + sequence {c['sequence_erase_s']:6.1f} s  fine-tune {c['finetune_total_s']:7.1f} s  "
              f"images {c['images']:5d} (~{c['generate_s_estimate']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
