"""Kill -9 a real (tiny, --smoke) run at random moments, rerun, and get the uninterrupted result.

    python -m pytest tests/test_runner_kill.py -q     # ~1-2 min: a few process starts

Each round starts ``eraselab run`` as a subprocess and SIGKILLs it after a seeded random delay;
the last round runs to the end. The final results (rows, scores and PNG bytes) must equal an
uninterrupted run's, with no duplicate rows and no temp files left.
"""

from __future__ import annotations

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

KILLS = 3


@pytest.mark.slow
def test_kill_at_random_points_then_resume_equals_uninterrupted(tmp_path):
    suite = write_suite(tmp_path)
    run(suite, tmp_path / "reference")
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "bench.cli", "run", str(suite), "--smoke", "--out", str(out),
           "--no-progress"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    rng = random.Random(0)
    killed_with_work = 0
    for round_ in range(KILLS):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        # wait for this round's log (its imports are done), then kill at a random moment
        logs_before = len(list(out.glob("logs/*.log")))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None \
                and len(list(out.glob("logs/*.log"))) == logs_before:
            time.sleep(0.1)
        time.sleep(rng.uniform(0.5, 6.0))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed_with_work += 1
        proc.wait()
    final = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert final.returncode == 0, final.stderr
    assert killed_with_work >= 1
    got, want = canonical(out), canonical(tmp_path / "reference")
    assert not got.duplicated(list(ROW_KEY)).any()
    pd.testing.assert_frame_equal(got, want)
    assert not [p for p in out.rglob(".*.tmp-*") if p.is_file()]
