"""The metrics engine and its statistics (bench/metrics.py, bench/core/stats.py), on data with known answers.

    pytest tests/test_metrics.py -q        # a few seconds, no model

Checks that the paired test finds a planted effect at the rate its exact power predicts and keeps
false alarms at or below alpha, that Benjamini-Hochberg matches scipy's, that intervals resample
erasure seeds (a seed-dependent erasure gets a wide interval and its own verdict), that identical
runs compare clean, that `eraselab compare` and `report --compare` give the same regressions, and
that a metric declared once is aggregated and compared without touching anything else.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binom, binomtest, false_discovery_control

from bench import metrics as bm
from bench.core import stats
from bench.core.errors import EraselabError


def _rows(method, concept, detected, suite_seeds, clip=None, prompt_set="target"):
    n = len(detected)
    return pd.DataFrame({
        "model": "m", "method": method, "variant": "", "concept": concept, "prompt_set": prompt_set,
        "prompt_id": [f"p{i % 4}" for i in range(n)], "sample": list(range(n)),
        "suite_seed": list(suite_seeds), "seed": [1000 + i for i in range(n)],
        "detected": [float(d) for d in detected],
        "clip_score": clip if clip is not None else np.full(n, 0.3),
        "clip_image_cosine": np.nan if method == "original" else np.full(n, 0.9),
        "edit_id": f"{method}-{concept}"})


def _paired_run(rng, n, p_orig, p_drop, p_gain, seeds=(0,)):
    """The original detects with p_orig; the edit loses a detected twin with p_drop and finds an
    undetected one with p_gain: discordant pairs with known probabilities."""
    orig = rng.random(n) < p_orig
    u = rng.random(n)
    edited = np.where(orig, u >= p_drop, u < p_gain)
    suite_seeds = np.resize(np.asarray(seeds), n)
    return pd.concat([_rows("original", "c", orig, suite_seeds), _rows("k", "c", edited, suite_seeds)],
                     ignore_index=True)


def _exact_power(n, p_orig, p_drop, p_gain, alpha):
    """P(exact McNemar rejects) by enumerating the discordant counts (down, up)."""
    q_down, q_up = p_orig * p_drop, (1 - p_orig) * p_gain
    power = 0.0
    for down in range(n + 1):
        p_down = binom.pmf(down, n, q_down)
        if p_down < 1e-12:
            continue
        q_up_cond = q_up / (1 - q_down) if q_down < 1 else 0.0
        for up in range(n - down + 1):
            p = p_down * binom.pmf(up, n - down, q_up_cond)
            if p < 1e-12:
                continue
            if up + down and binomtest(up, up + down, 0.5).pvalue < alpha:
                power += p
    return power


@pytest.mark.parametrize("p_drop,p_gain", [(0.0, 0.0), (0.05, 0.05), (0.12, 0.0)])
def test_mcnemar_rejects_at_the_rate_its_exact_power_predicts(p_drop, p_gain):
    rng = np.random.default_rng(7)
    n, p_orig, trials = 64, 0.7, 400
    rejections = 0
    for _ in range(trials):
        df = _paired_run(rng, n, p_orig, p_drop, p_gain)
        orig, edited = df[df.method == "original"].detected, df[df.method == "k"].detected
        rejections += stats.mcnemar_exact(orig.to_numpy(), edited.to_numpy()) < stats.ALPHA
    expected = _exact_power(n, p_orig, p_drop, p_gain, stats.ALPHA)
    se = math.sqrt(max(expected * (1 - expected), 0.01) / trials)
    assert abs(rejections / trials - expected) < 3.5 * se
    if p_drop == p_gain:  # no effect: false alarms at or below alpha
        assert rejections / trials <= stats.ALPHA + 3 * math.sqrt(stats.ALPHA * (1 - stats.ALPHA) / trials)
    else:
        assert expected > 0.3  # a real effect is found often, not by luck


def test_aggregate_pairs_twins_and_finds_the_planted_erasure():
    rng = np.random.default_rng(0)
    df = _paired_run(rng, 128, 0.95, 0.6, 0.0, seeds=(0, 1))
    agg = bm.aggregate(df)
    row = agg[(agg.scope == "concept") & (agg.method == "k") & (agg.metric == "detected")].iloc[0]
    orig = df[df.method == "original"].detected.to_numpy()
    edited = df[df.method == "k"].detected.to_numpy()
    assert row.delta == pytest.approx(edited.mean() - orig.mean())
    assert row.delta_hi < 0 and row.p == pytest.approx(stats.mcnemar_exact(orig, edited))
    assert row.verdict == bm.BETTER and bm.erased(row.verdict)
    assert row.n_pairs == 128 and row.n_seeds == 2 and row.test == "mcnemar-exact"


def test_twins_with_another_image_seed_are_not_paired():
    rng = np.random.default_rng(0)
    df = _paired_run(rng, 32, 0.9, 0.5, 0.0)
    df.loc[df.method == "k", "seed"] += 1
    row = bm.aggregate(df).query("method == 'k' and metric == 'detected' and scope == 'concept'").iloc[0]
    assert row.n_pairs == 0 and math.isnan(row.p) and row.verdict == ""


def test_a_seed_dependent_erasure_gets_a_wide_interval_and_its_own_verdict():
    # Seed 0 erases every image, seed 1 none: McNemar is significant for these edits, but the
    # interval across erasure seeds reaches zero.
    n = 64
    seeds = np.repeat([0, 1], n // 2)
    orig = np.ones(n)
    edited = np.where(seeds == 0, 0.0, 1.0)
    df = pd.concat([_rows("original", "c", orig, seeds), _rows("k", "c", edited, seeds)], ignore_index=True)
    row = bm.aggregate(df).query("method == 'k' and metric == 'detected' and scope == 'concept'").iloc[0]
    assert row.p < 1e-6 and row.delta_hi >= 0 > row.delta_lo
    assert row.verdict == bm.BETTER_SEED_DEPENDENT and not bm.erased(row.verdict)
    assert (row.seed_min, row.seed_max) == (0.0, 1.0)
    # the same images with one seed label: the ordinary (narrow) interval
    flat = stats.hierarchical_bootstrap(edited - orig, None)
    assert flat[2] < -0.3


def test_hierarchical_bootstrap_is_seeded_and_reduces_to_the_plain_one():
    x = np.random.default_rng(1).random(50)
    assert stats.hierarchical_bootstrap(x, np.zeros(50)) == stats.hierarchical_bootstrap(x, None)
    assert stats.hierarchical_bootstrap(x, None) == stats.hierarchical_bootstrap(x, None)
    assert stats.bootstrap_ci([1, 0, 1, 1]) == (0.75, 0.25, 1.0)


def test_benjamini_hochberg_matches_scipy():
    p = np.random.default_rng(3).random(40) ** 3
    assert np.allclose(stats.benjamini_hochberg(p), false_discovery_control(p, method="bh"))
    with_nan = stats.benjamini_hochberg([0.01, math.nan, 0.04])
    assert math.isnan(with_nan[1]) and with_nan[0] == pytest.approx(0.02) and with_nan[2] == pytest.approx(0.04)


def test_identical_runs_compare_clean_and_a_planted_regression_is_found():
    rng = np.random.default_rng(5)
    a = _paired_run(rng, 128, 0.95, 0.9, 0.0, seeds=(0, 1))
    agg_a = bm.aggregate(a)
    same = bm.compare(a, agg_a, a, agg_a)
    assert same.rows and not (same.regressions or same.improvements or same.changes)
    assert all(r["paired"] and r["p"] == 1.0 for r in same.rows)
    # run B: the edit stops working on most images (target detection back up): a regression
    b = a.copy()
    sel = (b.method == "k") & (rng.random(len(b)) < 0.8)
    b.loc[sel, "detected"] = 1.0
    result = bm.compare(a, agg_a, b, bm.aggregate(b))
    assert [(r["method"], r["metric"], r["prompt_set"]) for r in result.regressions] == [("k", "detected", "target")]
    assert result.regressions[0]["test"] == "mcnemar-exact" and result.regressions[0]["p_adj"] < 0.05


def test_runs_with_other_seeds_are_compared_unpaired():
    rng = np.random.default_rng(6)
    a = _paired_run(rng, 96, 0.9, 0.8, 0.0)
    b = _paired_run(rng, 96, 0.9, 0.0, 0.0)
    b["suite_seed"] = 1
    result = bm.compare(a, bm.aggregate(a), b, bm.aggregate(b))
    row = next(r for r in result.rows if r["method"] == "k" and r["metric"] == "detected")
    assert not row["paired"] and row["test"] == "fisher-exact" and row["outcome"] == bm.REGRESSION
    assert row["delta_lo"] > 0


def test_report_compare_and_cli_compare_agree(tmp_path, capsys):
    import json

    from bench.cli import main
    from reports.build import build_report
    from reports.synthetic import make_run

    small = {"concepts": ("snoopy",), "methods": ("original", "fewshot-te", "noop"), "samples": 16}
    base = make_run(tmp_path / "base", run_name="base", **small)
    worse = make_run(tmp_path / "worse", shift=0.6, seed=1, run_name="worse", **small)
    capsys.readouterr()
    assert main(["compare", str(base), str(worse), "--json"]) == 1
    cli = json.loads(capsys.readouterr().out)
    build_report(worse, out=tmp_path / "cmp", formats=("md",), compare=base)
    md = (tmp_path / "cmp" / "tables" / "compare.md").read_text()
    flagged = sorted(l.split("|")[2].strip() + "/" + l.split("|")[3].strip()
                     for l in md.splitlines() if "REGRESSION" in l and l.startswith("|"))
    expected = sorted(f"{r['method']}/{bm.METRIC_BY_NAME[r['metric']].label}, {r['prompt_set']}"
                      for r in cli["regressions"])
    assert flagged == expected and expected


def test_a_metric_declared_once_is_aggregated_and_compared(monkeypatch):
    """What docs/contributing.md promises: one Metric entry, nothing else edited."""
    brightness = bm.Metric("brightness", "Brightness", bm.CONTINUOUS, ("target",), {"target": "higher"})
    monkeypatch.setattr(bm, "METRICS", bm.METRICS + (brightness,))
    monkeypatch.setitem(bm.METRIC_BY_NAME, "brightness", brightness)
    rng = np.random.default_rng(2)
    a = _paired_run(rng, 64, 0.9, 0.0, 0.0)
    a["brightness"] = rng.random(len(a))
    agg = bm.aggregate(a)
    rows = agg[agg.metric == "brightness"]
    assert set(rows.method) == {"original", "k"} and rows.query("method == 'k'").test.iloc[0] == "wilcoxon-signed-rank"
    b = a.copy()
    b.loc[b.method == "k", "brightness"] -= 0.5
    result = bm.compare(a, agg, b, bm.aggregate(b))
    assert [(r["method"], r["metric"]) for r in result.regressions] == [("k", "brightness")]


def test_size_rule_names_what_is_too_small():
    ok = {("c", "target"): 64, ("c", "related"): 32, ("c", "unrelated"): 64}
    assert bm.size_problems(ok, 2) == []
    problems = bm.size_problems({**ok, ("c", "related"): 16}, 1)
    assert len(problems) == 2 and "16 images per related group" in problems[0] and "seed" in problems[1]


def test_an_adapter_counts_the_parameters_it_adds(tmp_path):
    import torch
    from safetensors.torch import save_file

    from bench.manifest import EditRecord
    from methods.delta import DELTA_FILE, saved_inference_params

    # an edit that changes 5 base weights and carries a 3 x 4 adapter for sampling
    save_file({"unet.w": torch.zeros(5), "inference.spm.up": torch.zeros(3, 4)}, str(tmp_path / DELTA_FILE))
    assert saved_inference_params(tmp_path) == 12
    df = _rows("original", "c", [1, 1], [0, 0])
    df = pd.concat([df, _rows("k", "c", [0, 1], [0, 0])], ignore_index=True)
    edits = {"k-c": EditRecord(method="k", concept="c", model="m", params_changed=5, params_added=12,
                               seconds=1.0, delta_bytes=100)}
    agg = bm.aggregate(df, edits=edits)
    params = agg[(agg.metric == "params_changed") & (agg.method == "k")]
    assert params.value.tolist() == [17.0]
    (tmp_path / DELTA_FILE).write_bytes(b"not a safetensors file")
    with pytest.raises(EraselabError, match="not a readable safetensors"):
        saved_inference_params(tmp_path)
