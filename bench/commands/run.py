"""``eraselab run SUITE``: erase -> generate -> score -> aggregate for a suite's whole grid.

    eraselab run mini-default                      # -> runs/mini-default/
    eraselab run paper-sd14 --smoke --out /tmp/s   # tiny random stand-ins, seconds, on CPU
    eraselab run mini-full --shard 0/2 &  eraselab run mini-full --shard 1/2
    accelerate launch --multi_gpu --num_processes 2 -m bench.cli run mini-full --shard auto
    # (--multi_gpu selects the torchrun launcher; no GPU is needed: no process group is opened)
    sbatch --array=0-3 --wrap "eraselab run mini-full --shard auto"   # one shard per array task

SUITE is a name under datasets/suites/ or a YAML path. Finished work is never recomputed: run
the same command again after a crash (or kill) and it resumes; a finished run's rerun does no
model work. Prints the run folder and a short summary; results.parquet, aggregates.parquet/.csv,
manifest.json and logs/ are in the run folder.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="run a benchmark suite (erase, generate, score, aggregate)",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("suite", metavar="SUITE", help="suite name (datasets/suites/) or YAML path")
    p.add_argument("--out", type=Path, help="run folder (default runs/<suite>)")
    p.add_argument("--shard", metavar="I/N|auto",
                   help="do shard I of N; auto (the default): from torchrun/accelerate's RANK and "
                        "WORLD_SIZE or a Slurm job array's SLURM_ARRAY_TASK_ID/_COUNT, else 0/1")
    p.add_argument("--smoke", action="store_true",
                   help="tiny random model and scorers, few prompts: checks the path in seconds")
    p.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.set_defaults(handler=run)


def parse_shard(text: str | None, env=os.environ) -> tuple[int, int]:
    """(index, count) of this process's shard, from ``--shard`` or the launcher's environment."""
    from bench.core.errors import UsageError
    if text is None or text == "auto":
        return shard_from_env(env)
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise UsageError(f"--shard {text!r}: expected I/N (e.g. 0/2) or auto") from None
    if n < 1 or not 0 <= i < n:
        raise UsageError(f"--shard {text!r}: need 0 <= I < N")
    return i, n


def shard_from_env(env) -> tuple[int, int]:
    """torchrun / accelerate (RANK, WORLD_SIZE) first, then a Slurm job array; 0/1 without either."""
    from bench.core.errors import UsageError

    def number(name: str, default: str) -> int:
        value = env.get(name, default) or default
        try:
            return int(value)
        except ValueError:
            raise UsageError(f"environment variable {name}={value!r}: expected an integer") from None

    if number("WORLD_SIZE", "1") > 1:
        i, n, source = number("RANK", env.get("LOCAL_RANK", "0") or "0"), number("WORLD_SIZE", "1"), "RANK/WORLD_SIZE"
    elif "SLURM_ARRAY_TASK_COUNT" in env:
        # array indices need not start at 0 (--array=1-4): shards count from the first one
        first = number("SLURM_ARRAY_TASK_MIN", "0")
        i, n = number("SLURM_ARRAY_TASK_ID", "0") - first, number("SLURM_ARRAY_TASK_COUNT", "1")
        source = "SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT"
    else:
        return 0, 1
    if n < 1 or not 0 <= i < n:
        raise UsageError(f"shard {i}/{n} from {source}: need 0 <= index < count")
    return i, n


def run(args) -> int:
    from bench.runner.suite import load_suite

    shard = parse_shard(args.shard)
    suite = load_suite(args.suite)  # every suite problem, before any model work
    out = args.out or Path("runs") / suite.name
    import torch
    from bench.runner.run import run_suite
    device = args.device or ("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    summary = run_suite(suite, out, shard=shard, smoke=args.smoke, device=device,
                        progress=not args.no_progress)
    print(summary["run_dir"])
    print(f"suite {summary['suite']}{' (smoke)' if args.smoke else ''}, shard {summary['shard']}: "
          f"{summary['edits']} edits, {summary['images']} images, {summary['rows']} rows; this "
          f"process erased {summary['erased']}, generated {summary['generated']} images in "
          f"{summary['seconds']} s")
    if not summary["complete"]:
        print(f"{summary['batches_left']} batches left for other shards; the last to finish "
              f"writes results.parquet (or rerun without --shard)")
        return 0
    _print_table(Path(summary["run_dir"]))
    return 0


def _print_table(run_dir: Path) -> None:
    import pandas as pd
    from bench.metrics import POOLED_SCOPE
    from bench.rundir import main_aggregates, study_arms
    results = pd.read_parquet(run_dir / "results.parquet")
    studied = study_arms(results)
    agg = main_aggregates(pd.read_parquet(run_dir / "aggregates.parquet"), results)
    agg = agg[(agg["scope"] == POOLED_SCOPE) & (agg["metric"] == "detected")].copy()
    agg["method"] = agg["method"] + agg["variant"].map(lambda v: f"[{v}]" if v else "")
    table = agg.pivot_table(index="method", columns="prompt_set", values="value", aggfunc="mean")
    print("detection rate (pooled over concepts) by prompt set:")
    print(table.round(3).to_string())
    if studied:
        print(f"and {len(studied)} study arms (resurgence, robustness): see the report's sections")
    sys.stdout.flush()
