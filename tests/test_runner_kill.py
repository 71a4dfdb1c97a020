"""Kill -9 a real (tiny, --smoke) run at random moments, rerun, and get the uninterrupted result.

    python -m pytest tests/test_runner_kill.py -q     # ~1 min

The first round is a fresh ``python -m bench.cli run`` process, SIGKILLed a seeded random delay
after its log appears. The next rounds are processes forked from this one after the reference
run, so that each starts working at once instead of spending ten seconds importing diffusers:
every one runs ``bench.cli.main`` on the same folder and is SIGKILLed after a seeded random
delay, at least ``KILLS`` times while it is alive (mid-erasure, mid-PNG, mid-parquet, holding
the run lock). A last run completes it. The results (rows, scores, PNG bytes), aggregates (all
but the erasure's measured seconds), part files and saved deltas must equal an uninterrupted
run's, with no duplicate rows, no temp files and no lock still held.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from bench.core.schema import ROW_KEY
from tests.test_runner import canonical, run, write_suite

KILLS = 10
MAX_ROUNDS = 40


def _child(argv):
    from bench.cli import main
    os._exit(main(argv))


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _parts(run_dir) -> dict:
    return {p.relative_to(run_dir).as_posix(): pd.read_parquet(p)
            for p in sorted((run_dir / "parts").rglob("*.parquet")) if not p.name.startswith(".")}


@pytest.mark.slow
def test_kill_at_random_points_then_resume_equals_uninterrupted(tmp_path):
    suite = write_suite(tmp_path)
    run(suite, tmp_path / "reference")  # also imports everything the forked rounds need
    out = tmp_path / "killed"
    argv = ["run", str(suite), "--smoke", "--out", str(out), "--no-progress"]
    rng = random.Random(0)
    kills = 0

    # round 0: a fresh interpreter, killed during its set-up or first work
    proc = subprocess.Popen([sys.executable, "-m", "bench.cli", *argv], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and not list(out.glob("logs/*.log")):
        time.sleep(0.05)
    time.sleep(rng.uniform(0.2, 3.0))
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
        kills += 1
    proc.wait()

    # rounds 1..: forked workers, killed after 0.05-0.4 s of work
    fork = multiprocessing.get_context("fork")
    mid_work = 0
    for _ in range(MAX_ROUNDS):
        if kills >= KILLS + 1:
            break
        worker = fork.Process(target=_child, args=(argv,))
        worker.start()
        worker.join(rng.uniform(0.05, 0.4))
        if worker.is_alive():
            mid_work += not (out / "manifest.json").is_file()
            os.kill(worker.pid, signal.SIGKILL)
            kills += 1
        worker.join()
    assert kills >= KILLS and mid_work >= KILLS // 2, (kills, mid_work)

    from bench.runner.run import run_suite
    from bench.suite import load_suite
    summary = run_suite(load_suite(suite), out, smoke=True, progress=False)
    assert summary["complete"]
    ref = tmp_path / "reference"
    got, want = canonical(out), canonical(ref)
    assert not got.duplicated(list(ROW_KEY)).any()
    pd.testing.assert_frame_equal(got, want)
    # every aggregate but the erasure's wall time, a measurement of this machine, not a result
    measured = lambda frame: frame[frame["metric"] != "seconds"].reset_index(drop=True)  # noqa: E731
    pd.testing.assert_frame_equal(measured(pd.read_parquet(out / "aggregates.parquet")),
                                  measured(pd.read_parquet(ref / "aggregates.parquet")))
    got_parts, want_parts = _parts(out), _parts(ref)
    assert sorted(got_parts) == sorted(want_parts)
    for name, frame in want_parts.items():
        pd.testing.assert_frame_equal(got_parts[name], frame)
    deltas = {p.parent.name: _sha(p) for p in (ref / "edits").glob("*/delta.safetensors")}
    assert deltas == {p.parent.name: _sha(p) for p in (out / "edits").glob("*/delta.safetensors")}
    assert not list(out.rglob(".*.tmp-*"))
    from bench.core.files import file_lock
    from bench.runner.store import RunStore
    with file_lock(RunStore(out).shard_lock((0, 1))):  # every killed holder's lock was released
        pass
