"""Study wall time: each study suite from an empty run folder to its report, on this machine.

    python -m benchmarks.study_speed mini-ablation mini-shots --out-root runs
    # -> benchmarks/results/study_speed.json, one section per suite; the run folders stay in
    #    --out-root (runs/<suite>) for their reports and for the numbers posted on the issue

Runs ``eraselab run SUITE --out ROOT/SUITE`` then ``eraselab report`` as the CLI does, records
the wall seconds of each, the run's stage seconds, images and edits. A folder that already holds
work is refused (its time would not be a fresh run's). Measures, asserts nothing. Not a test.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.results_io import REPO_ROOT as ROOT, RESULTS_DIR, machine, write_result

OUT = RESULTS_DIR / "study_speed.json"


def measure(suite: str, folder: Path) -> dict:
    if folder.exists() and any(folder.iterdir()):
        raise SystemExit(f"{folder}: holds an earlier run; give an empty --out-root")
    out = {"suite": suite, "measured_at": datetime.datetime.now().isoformat(timespec="seconds")}
    for key, cmd in (("run_s", ["run", suite, "--out", str(folder), "--no-progress"]),
                     ("report_s", ["report", str(folder)])):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "bench.cli", *cmd], check=True, cwd=ROOT)
        out[key] = round(time.perf_counter() - t0, 1)
    manifest = json.loads((folder / "manifest.json").read_text())
    out.update(total_s=round(out["run_s"] + out["report_s"], 1), counts=manifest["counts"],
               stage_seconds={k: round(v, 1) for k, v in manifest["seconds_per_stage"].items()})
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("suites", nargs="+")
    parser.add_argument("--out-root", default="runs", help="run folders go to OUT_ROOT/<suite>")
    args = parser.parse_args(argv)
    try:
        record = json.loads(OUT.read_text())
    except (OSError, ValueError):
        record = {"benchmark": "study_speed", "suites": {}}
    import torch
    record.update(machine=machine(), torch_threads=torch.get_num_threads())
    for suite in args.suites:
        result = measure(suite, Path(args.out_root) / suite)
        record["suites"][suite] = result
        write_result(record, OUT)
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
