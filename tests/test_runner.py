"""The runner end to end on tiny stand-ins (--smoke): results, resume, failures, compare.

    python -m pytest tests/test_runner.py -q      # ~1-2 min on 2 busy cores

Runs are in-process with a small suite (tests/test_runner_kill.py and test_runner_shard.py run
real processes). Every run is a ``--smoke`` run: the tiny pipeline, tiny CLIP, one torch thread.
"""

from __future__ import annotations

import errno
import hashlib
import json
import shutil
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.core.errors import EraselabError
from bench.metrics import AGGREGATE_COLUMNS
from bench.core.schema import ROW_COLUMNS, ROW_KEY

SUITE = """
suite: tiny
catalog: miniworld
smoke_sized: true
models: [{id: miniworld, path: miniworld}]
methods: [original, uce, negative-prompt]
concepts: [church]
prompt_sets: {target: {prompts: 1, samples: 2}, related: {prompts: 1, samples: 2}, unrelated: {prompts: 1, samples: 2}}
sampler: {steps: 2, guidance: 6.0, batch_size: 2}
scorers: [clip-score]
preservation: [clip-image-similarity, kid-clip]
seeds: [0]
"""


def write_suite(folder: Path, text: str = SUITE) -> Path:
    path = folder / "tiny.yaml"
    path.write_text(text)
    return path


def run(suite_path, out, **kw):
    from bench.runner.run import run_suite
    from bench.suite import load_suite
    return run_suite(load_suite(suite_path), out, smoke=True, progress=False, **kw)


def canonical(run_dir: Path) -> pd.DataFrame:
    """The results with image content hashes, run name dropped, in a fixed order."""
    frame = pd.read_parquet(run_dir / "results.parquet").drop(columns=["run"])
    frame["png_sha"] = [hashlib.sha256((run_dir / p).read_bytes()).hexdigest() for p in frame["image_path"]]
    return frame.sort_values(list(ROW_KEY)).reset_index(drop=True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ref")
    suite = write_suite(folder)
    summary = run(suite, folder / "run")
    return suite, folder / "run", summary


def test_run_writes_rows_aggregates_and_manifest(reference):
    _, run_dir, summary = reference
    # the base model is no edit: two methods erased, nothing saved for the original
    assert summary["complete"] and summary["erased"] == 2 and summary["generated"] == 12 + 6
    assert len(list((run_dir / "edits").iterdir())) == 2
    results = pd.read_parquet(run_dir / "results.parquet")
    assert set(ROW_COLUMNS) <= set(results.columns) and "clip-score.version" in results.columns
    assert len(results) == 3 * 3 * 2  # methods x sets x (1 prompt x 2 samples)
    assert not results.duplicated(list(ROW_KEY)).any()
    for p in results["image_path"]:
        assert (run_dir / p).is_file() and not Path(p).is_absolute()
    orig = results[results.method == "original"]
    assert orig["clip_image_cosine"].isna().all()
    assert results[results.method != "original"]["clip_image_cosine"].between(-1, 1.0001).all()
    # the same seed for the same prompt and sample across methods: the twin exists
    assert results.groupby(["prompt_id", "sample"])["seed"].nunique().max() == 1
    agg = pd.read_parquet(run_dir / "aggregates.parquet")
    assert list(agg.columns) == list(AGGREGATE_COLUMNS)
    assert (run_dir / "aggregates.csv").is_file()
    concept_rows = agg[agg.scope == "concept"]
    # 3 methods x 3 prompt sets x (detected, judge_detected, clip_score, similarity) + KID on 2 sets
    # of 2 edited methods + 3 costs (seconds, params, delta_bytes) of 2 edited methods
    assert len(concept_rows) == 36 + 4 + 6
    kid = concept_rows[concept_rows.metric == "kid"]
    assert set(kid.method) == {"uce", "negative-prompt"} and kid.value.notna().all()
    costs = concept_rows[concept_rows.metric == "seconds"]
    assert set(costs.method) == {"uce", "negative-prompt"} and (costs.value >= 0).all()
    sizes = concept_rows[concept_rows.metric == "delta_bytes"]
    assert set(sizes.method) == {"uce", "negative-prompt"} and (sizes.value > 0).all()
    from bench.manifest import read_manifest
    manifest = read_manifest(run_dir / "manifest.json")
    assert set(manifest.edits) == set(results.loc[results.method != "original", "edit_id"])
    for record in manifest.edits.values():
        assert record.delta_bytes > 0 and record.seconds is not None
    # where each edit's change went: UCE's cross-attention keys and values, nothing for a prompt
    changes = {r.method: r.change_by_group for r in manifest.edits.values()}
    assert changes["negative-prompt"] == []
    assert changes["uce"] and {g["kind"] for g in changes["uce"]} == {"cross-attention"}
    assert manifest.versions["torch"] and manifest.hardware and manifest.seconds_per_stage
    assert list((run_dir / "logs").glob("*.log"))


def test_aggregates_are_derived_from_the_rows(reference):
    from bench.metrics import aggregate
    from bench.core.stats import hierarchical_bootstrap
    _, run_dir, _ = reference
    results = pd.read_parquet(run_dir / "results.parquet")
    stored = pd.read_parquet(run_dir / "aggregates.parquet")
    agg = aggregate(results)
    row = agg[(agg.method == "uce") & (agg.prompt_set == "target") & (agg.metric == "clip_score")].iloc[0]
    g = results[(results.method == "uce") & (results.prompt_set == "target")]
    assert (row["value"], row["lo"], row["hi"]) == hierarchical_bootstrap(g["clip_score"], g["suite_seed"])
    per_image = stored[stored.metric.isin(["detected", "clip_score", "clip_image_cosine"])]
    pd.testing.assert_frame_equal(per_image.reset_index(drop=True),
                                  agg[agg.metric.isin(["detected", "clip_score", "clip_image_cosine"])]
                                  .reset_index(drop=True))


def test_rerun_does_no_model_work(reference, monkeypatch):
    suite, run_dir, _ = reference
    before = canonical(run_dir)
    import bench.runner.models as models

    def refuse(*a, **k):
        raise AssertionError("a finished run loaded a model")
    monkeypatch.setattr(models, "load", refuse)
    summary = run(suite, run_dir)
    assert summary["erased"] == summary["generated"] == summary["rescored"] == 0
    pd.testing.assert_frame_equal(canonical(run_dir), before)


def test_changing_one_methods_config_reruns_only_its_edits_and_images(reference, tmp_path):
    suite, run_dir, _ = reference
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    before = canonical(copy)
    changed = write_suite(tmp_path, SUITE.replace("methods: [original, uce, negative-prompt]",
                                                  "methods: [original, {name: uce, overrides: {lam: 0.25}}, negative-prompt]"))
    summary = run(changed, copy)
    after = canonical(copy)
    uce = before["method"] == "uce"
    assert summary["erased"] == 1 and summary["generated"] == int(uce.sum())
    keep = ["image_id", "png_sha", "detected"]
    pd.testing.assert_frame_equal(after[~uce][keep], before[~uce][keep])
    assert not set(after[uce]["image_id"]) & set(before[uce]["image_id"])


def test_failing_scorer_stops_cleanly_and_resumes(reference, tmp_path, monkeypatch):
    suite, ref_dir, _ = reference
    from bench.runner.scoring import Scoring
    real = Scoring.score_images
    calls = {"n": 0}

    def flaky(self, images, items):
        calls["n"] += 1
        if calls["n"] == 3:
            raise EraselabError("clip-score: backend exploded")
        return real(self, images, items)
    monkeypatch.setattr(Scoring, "score_images", flaky)
    with pytest.raises(EraselabError, match="exploded"):
        run(suite, tmp_path / "run")
    assert len(list((tmp_path / "run" / "parts" / "images").glob("*.parquet"))) == 2  # kept
    monkeypatch.setattr(Scoring, "score_images", real)
    summary = run(suite, tmp_path / "run")
    assert summary["complete"] and summary["rescored"] == 2  # the failed batch's PNGs were kept
    pd.testing.assert_frame_equal(canonical(tmp_path / "run"), canonical(ref_dir))


def test_out_of_disk_is_one_line_and_resumable(reference, tmp_path, monkeypatch):
    suite, ref_dir, _ = reference
    import bench.core.files as store
    real = store.write_png
    calls = {"n": 0}

    def full_disk(path, image):
        calls["n"] += 1
        if calls["n"] == 5:
            return store.atomic_write(path, lambda tmp: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space")))
        return real(path, image)
    monkeypatch.setattr(store, "write_png", full_disk)
    with pytest.raises(EraselabError) as err:
        run(suite, tmp_path / "run")
    assert "out of disk space" in str(err.value) and "\n" not in str(err.value)
    assert not list((tmp_path / "run").rglob(".*.tmp-*"))  # no temp file left behind
    monkeypatch.setattr(store, "write_png", real)
    run(suite, tmp_path / "run")
    pd.testing.assert_frame_equal(canonical(tmp_path / "run"), canonical(ref_dir))


def test_bad_suite_fails_before_model_work(tmp_path, monkeypatch, capsys):
    from bench.cli import main
    import bench.runner.models as models
    monkeypatch.setattr(models, "load", lambda *a, **k: (_ for _ in ()).throw(AssertionError("loaded")))
    path = write_suite(tmp_path, SUITE.replace("[original, uce", "[original, ucee").replace("steps: 2", "steps: 0"))
    assert main(["run", str(path), "--smoke", "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert "ucee" in err and "sampler.steps" in err and not (tmp_path / "r").exists()


@pytest.mark.parametrize("name", ["miniworld", "miniworld-small-unet"])
def test_missing_mini_world_says_use_smoke(monkeypatch, name):
    import bench.miniworld.weights
    from bench.runner.models import resolve

    def missing(reldir, root=None):
        raise EraselabError("datasets/miniworld/v1/SHA256SUMS: missing")
    monkeypatch.setattr(bench.miniworld.weights, "verified_dir", missing)
    with pytest.raises(EraselabError, match="--smoke"):
        resolve(name)


def test_compare_of_a_run_with_itself_finds_nothing_and_refuses_other_suites(reference, tmp_path, capsys):
    from bench.cli import main
    _, run_dir, _ = reference
    assert main(["compare", str(run_dir), str(run_dir), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["tests"] > 0 and not (out["regressions"] or out["improvements"] or out["changes"])
    other = tmp_path / "other"
    shutil.copytree(run_dir, other)
    manifest = json.loads((other / "manifest.json").read_text())
    (other / "manifest.json").write_text(json.dumps({**manifest, "suite": "another-suite"}))
    assert main(["compare", str(run_dir), str(other)]) == 1
    err = capsys.readouterr().err
    assert "another-suite" in err and "--any-suites" in err and len(err.strip().splitlines()) == 1
    assert main(["compare", str(run_dir), str(other), "--any-suites"]) == 0
    assert "different suites" in capsys.readouterr().out


def test_cli_smoke_prints_run_dir_and_summary(reference, capsys):
    from bench.cli import main
    suite, run_dir, _ = reference
    assert main(["run", str(suite), "--smoke", "--out", str(run_dir), "--no-progress"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == str(run_dir) and "2 edits" in out[1]  # uce and negative-prompt; the original is no edit


def test_shard_from_environment():
    from bench.commands.run import parse_shard
    assert parse_shard(None, {"RANK": "1", "WORLD_SIZE": "2"}) == (1, 2)
    assert parse_shard(None, {}) == (0, 1)
    assert parse_shard("2/3") == (2, 3)
    with pytest.raises(EraselabError):
        parse_shard("3/3")


def test_images_do_not_depend_on_the_batch_size():
    """Batch size is not part of an image's address (plan.py), so a rerun at another batch size
    reuses images: each image's own generator makes them equal (on the tiny pipeline exactly; on
    the mini world within 1/255, benchmarks/results/batch_invariance.json)."""
    from bench.generate import generate
    from bench.tiny import tiny_pipeline
    pipe = tiny_pipeline()
    prompts = ["a photo of snoopy", "a photo of a church", "a tower", "van gogh"] * 2
    reference = generate(pipe, prompts, list(range(8)), steps=4, batch_size=8)
    for batch_size in (1, 3):
        again = generate(pipe, prompts, list(range(8)), steps=4, batch_size=batch_size)
        assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(reference, again))
