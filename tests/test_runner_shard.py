"""Two CPU processes under ``accelerate launch`` share one run; results equal a one-process run.

    python -m pytest tests/test_runner_shard.py -q    # ~1 min

The shard index comes from RANK / WORLD_SIZE, set by accelerate's torchrun launcher
(``--multi_gpu``: it needs no GPU, since the runner opens no process group; ``--cpu`` would
run a single process); each shard erases its own
edits and writes its own parts; the last to finish compacts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from bench.core.schema import ROW_KEY
from tests.test_runner import canonical, run, write_suite


@pytest.mark.slow
def test_accelerate_launch_two_cpu_shards(tmp_path):
    accelerate = shutil.which("accelerate")
    if accelerate is None:
        pytest.skip("accelerate CLI not installed")
    suite = write_suite(tmp_path)
    run(suite, tmp_path / "reference")
    out = tmp_path / "sharded"
    cmd = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no",
           "-m", "bench.cli", "run", str(suite), "--smoke", "--out", str(out), "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    logs = sorted(p.name for p in (out / "logs").glob("*.log"))
    assert any("shard0of2" in n for n in logs) and any("shard1of2" in n for n in logs)
    # each shard erased only its own edits: every edit was erased exactly once
    erased = [line for p in (out / "logs").glob("*.log") for line in p.read_text().splitlines()
              if " erased in " in line]
    assert len(erased) == len({l.split("edit ")[1].split()[0] for l in erased}) == 2  # the base is no edit
    got, want = canonical(out), canonical(tmp_path / "reference")
    assert not got.duplicated(list(ROW_KEY)).any()
    pd.testing.assert_frame_equal(got, want)


def test_explicit_shards_in_sequence_merge_without_duplicates(tmp_path):
    suite = write_suite(tmp_path)
    first = run(suite, tmp_path / "run", shard=(0, 2))
    assert not first["complete"] and not (tmp_path / "run" / "results.parquet").exists()
    second = run(suite, tmp_path / "run", shard=(1, 2))
    assert second["complete"] and first["erased"] + second["erased"] == 2
    run(suite, tmp_path / "reference")
    pd.testing.assert_frame_equal(canonical(tmp_path / "run"), canonical(tmp_path / "reference"))


@pytest.mark.parametrize("env_of", [
    lambda i: {"RANK": str(i), "WORLD_SIZE": "2"},
    lambda i: {"SLURM_ARRAY_TASK_ID": str(i + 3), "SLURM_ARRAY_TASK_MIN": "3", "SLURM_ARRAY_TASK_COUNT": "2"},
], ids=["torchrun", "slurm-array"])
def test_shard_auto_reads_the_launcher_environment(tmp_path, monkeypatch, env_of):
    from bench.cli import main
    suite = write_suite(tmp_path)
    out = tmp_path / "run"
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN",
                "SLURM_ARRAY_TASK_COUNT"):
        monkeypatch.delenv(var, raising=False)
    for i in (0, 1):
        with monkeypatch.context() as m:
            for k, v in env_of(i).items():
                m.setenv(k, v)
            assert main(["run", str(suite), "--smoke", "--out", str(out), "--no-progress", "--shard", "auto"]) == 0
        logs = [p.name for p in (out / "logs").glob("*.log")]
        assert any(f"shard{i}of2" in n for n in logs)
    run(suite, tmp_path / "reference")
    pd.testing.assert_frame_equal(canonical(out), canonical(tmp_path / "reference"))


def test_bad_launcher_environment_is_a_one_line_error(monkeypatch):
    from bench.commands.run import parse_shard
    from bench.core.errors import UsageError
    with pytest.raises(UsageError, match="SLURM_ARRAY_TASK_ID"):
        parse_shard("auto", {"SLURM_ARRAY_TASK_ID": "x", "SLURM_ARRAY_TASK_COUNT": "2"})
    with pytest.raises(UsageError, match="RANK/WORLD_SIZE"):
        parse_shard("auto", {"RANK": "5", "WORLD_SIZE": "2"})
    assert parse_shard("auto", {}) == (0, 1)
