"""The second judge, judge agreement and threshold sensitivity (bench/judging.py, reports/judges.py,
detectors/cnn_judge.py, bench/miniworld/degrade.py), on synthetic tables with known values."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bench.core.errors import EraselabError
from bench.judging import (cohen_kappa, judge_agreement, plausible_range, threshold_curves,
                           threshold_robustness)


def _rows(method, detected, judged, scores=None, judge_scores=None, concept="snoopy", prompt_set="target",
          seeds=None):
    n = len(detected)
    seeds = seeds if seeds is not None else [(i // 2) % 2 for i in range(n)]
    return pd.DataFrame({
        "model": "m", "method": method, "variant": "", "concept": concept, "prompt_set": prompt_set,
        "prompt_id": [f"p{i}" for i in range(n)], "sample": 0, "suite_seed": seeds, "seed": list(range(n)),
        "detector": "det", "detected": detected, "judge": "second", "judge_detected": judged,
        "detected_score": scores if scores is not None else [0.9 if d else 0.0 for d in detected],
        "detector_threshold": 0.25,
        "judge_score": judge_scores if judge_scores is not None else [0.9 if d else 0.1 for d in judged],
        "judge_threshold": 0.5})


def test_cohen_kappa_known_values_and_undefined():
    # p_o = 0.75, p_e = 0.5 * 0.25 + 0.5 * 0.75 = 0.5 -> kappa = (0.75 - 0.5) / 0.5
    assert cohen_kappa([1, 1, 0, 0], [1, 0, 0, 0]) == pytest.approx(0.5)
    assert cohen_kappa([1, 0, 1, 0], [1, 0, 1, 0]) == pytest.approx(1.0)
    assert math.isnan(cohen_kappa([1, 1, 1], [1, 1, 1]))   # one answer only: chance explains it all
    assert math.isnan(cohen_kappa([], []))


def test_agreement_rates_kappa_and_disagreement_flag():
    agree = _rows("a", [True, False] * 20, [True, False] * 20)
    # the second judge sees the concept in every image the detector misses
    apart = _rows("b", [True, False] * 20, [True] * 40)
    table = judge_agreement(pd.concat([agree, apart], ignore_index=True)).set_index("method")
    assert table.loc["a", "rate_detector"] == table.loc["a", "rate_judge"] == 0.5
    assert table.loc["a", "agreement"] == 1.0 and table.loc["a", "kappa"] == pytest.approx(1.0)
    assert not table.loc["a", "disagree"]
    assert table.loc["b", "rate_judge"] == 1.0 and table.loc["b", "agreement"] == 0.5
    assert table.loc["b", "diff"] == pytest.approx(0.5) and table.loc["b", "diff_lo"] > 0
    assert table.loc["b", "disagree"] and table.loc["b", "n"] == 40
    assert table.loc["b", "detector"] == "det" and table.loc["b", "judge"] == "second"


def test_agreement_skips_images_one_judge_did_not_read():
    rows = _rows("a", [True, None, False, True], [True, True, None, True])
    table = judge_agreement(rows)
    assert table.iloc[0]["n"] == 2 and table.iloc[0]["agreement"] == 1.0


def test_threshold_curve_reads_known_scores():
    rows = _rows("a", [True] * 4, [True] * 4, scores=[0.1, 0.3, 0.5, 0.9])
    curve = threshold_curves(rows, "detector", thresholds=(0.05, 0.2, 0.4, 0.6, 0.95)).set_index("threshold")
    assert curve["rate"].to_dict() == {0.05: 1.0, 0.2: 0.75, 0.4: 0.5, 0.6: 0.25, 0.95: 0.0}
    assert (curve["operating"] == 0.25).all() and (curve["n"] == 4).all()
    judged = threshold_curves(rows, "judge", thresholds=(0.5,))
    assert judged.iloc[0]["operating"] == 0.5 and judged.iloc[0]["judge"] == "second"
    with pytest.raises(ValueError, match="unknown judge role"):
        threshold_curves(rows, "referee")


def test_plausible_range():
    assert plausible_range(0.25) == (0.1, 0.5)
    assert plausible_range(0.5) == (0.2, 0.9)


def test_threshold_robustness_survives_only_where_erased_at_every_threshold():
    n = 40
    original = _rows("original", [True] * n, [True] * n, scores=[0.9] * n)
    clean = _rows("clean", [False] * n, [False] * n, scores=[0.0] * n)
    # faint: the detector's confidence is 0.3, above the operating 0.25 but below most of the range
    faint = _rows("faint", [True] * n, [True] * n, scores=[0.3] * n)
    table = threshold_robustness(pd.concat([original, clean, faint], ignore_index=True), "detector")
    table = table.set_index("method")
    assert "original" not in table.index
    assert table.loc["clean", "survives"] and table.loc["clean", "erased_at"] == table.loc["clean", "thresholds"]
    assert (table.loc["clean", "range_lo"], table.loc["clean", "range_hi"]) == (0.1, 0.5)
    assert not table.loc["faint", "survives"]
    assert table.loc["faint", "erased_at"] == [t for t in table.loc["faint", "thresholds"] if t > 0.3]
    assert table.loc["faint", "worst_delta"] == 0.0


def test_threshold_robustness_skips_judges_without_a_threshold():
    rows = pd.concat([_rows("original", [True] * 4, [True] * 4), _rows("a", [False] * 4, [False] * 4)])
    rows["detector_threshold"] = None
    assert threshold_robustness(rows, "detector").empty


def test_second_judge_metric_has_its_own_family():
    from bench.metrics import aggregate
    n = 64
    original = _rows("original", [True] * n, [True] * n)
    edited = _rows("a", [False] * n, [True] * (n // 2) + [False] * (n // 2))
    agg = aggregate(pd.concat([original, edited], ignore_index=True))
    edited_rows = agg[(agg["method"] == "a") & (agg["scope"] == "concept")].set_index("metric")
    first, second = edited_rows.loc["detected"], edited_rows.loc["judge_detected"]
    assert first["value"] == 0.0 and second["value"] == 0.5
    # each family holds one test, so each adjusted p equals its own raw p
    assert first["p_adj"] == pytest.approx(first["p"]) and second["p_adj"] == pytest.approx(second["p"])
    assert first["verdict"] == second["verdict"] == "better"


def test_report_names_a_verdict_only_one_judge_sees(tmp_path):
    from reports.judges import judge_word
    from reports.metrics import Estimate
    erased, kept = Estimate(0.1, verdict="better"), Estimate(0.9, verdict="no difference")
    assert judge_word({"detected": erased, "judge_detected": erased}) == "erased (both judges)"
    assert judge_word({"detected": erased, "judge_detected": kept}) == "erased by the detector's reading only"
    assert judge_word({"detected": kept, "judge_detected": erased}) == "erased by the second judge's reading only"
    assert judge_word({"detected": erased}) == "erased"


def test_report_sections_on_a_synthetic_run(tmp_path):
    from reports.build import build_report
    from reports.synthetic import make_run
    run = make_run(tmp_path / "run", samples=16, concepts=("snoopy",))
    main = build_report(run, formats=("md",))
    text = main.read_text()
    assert "### Judges: agreement of two independent judges" in text
    assert "### Judges: threshold sensitivity" in text
    assert "Detection (second judge), target" in text
    # esd erases slowly and the second judge sees half of what the detector misses: a disagreement
    assert "esd on snoopy, target" in text.split("### Judges: agreement")[1].split("###")[0]
    assert (run / "report" / "figures" / "judges-02-thresholds.png").is_file()


# -- the catalog's judge key ------------------------------------------------------------------
def test_catalog_judge_entry_and_errors(tmp_path):
    from bench.catalog import load_catalog
    catalog = load_catalog("miniworld")
    assert catalog["snoopy"].judge == {"name": "miniworld-cnn-judge", "label": "snoopy"}
    assert load_catalog("paper")["Snoopy"].judge == {}
    path = tmp_path / "c.yaml"
    path.write_text("name: c\nversion: 1\nconcepts:\n  - {name: x, type: object, templates: ['a {}'], "
                    "detector: {name: miniworld-yolo}, judge: {name: miniworld-yolo}}\n")
    with pytest.raises(EraselabError, match="second judge must be another scorer"):
        load_catalog(path)
    path.write_text("name: c\nversion: 1\nconcepts:\n  - {name: x, type: object, templates: ['a {}'], "
                    "judge: {label: y}}\n")
    with pytest.raises(EraselabError, match=r"judge\.name"):
        load_catalog(path)


# -- the CNN judge ----------------------------------------------------------------------------
def _judge_folder(tmp_path):
    import torch
    from detectors.cnn_judge import build_judge, save_judge
    torch.manual_seed(0)
    objects, styles = ["church", "snoopy"], ["plain", "van gogh"]
    net = build_judge(objects, styles, widths=(8, 8)).eval()
    save_judge(net, tmp_path / "judge", objects, styles, widths=(8, 8), threshold=0.5)
    return tmp_path / "judge"


def test_cnn_judge_round_trip_and_rule(tmp_path):
    from PIL import Image
    from bench.catalog import load_catalog
    from detectors.cnn_judge import JudgeScorer
    folder = _judge_folder(tmp_path)
    catalog = load_catalog("miniworld")
    images = [Image.new("RGB", (64, 64), c) for c in ((200, 30, 30), (30, 200, 30))]
    scorer = JudgeScorer(judge_dir=str(folder))
    rows = scorer.score(images, [None, None], [catalog["church"], catalog["van gogh"]])
    for row in rows:
        assert 0.0 <= row["concept_score"] <= 1.0
        assert row["detected"] == (row["concept_score"] >= scorer.threshold)
    low = JudgeScorer(judge_dir=str(folder), threshold=0.0).score(images, [None, None],
                                                                  [catalog["church"], catalog["van gogh"]])
    assert all(r["detected"] for r in low)
    assert rows == scorer.score(images, [None, None], [catalog["church"], catalog["van gogh"]])
    with pytest.raises(EraselabError, match="has no class 'eiffel tower'"):
        scorer.score(images[:1], [None], [catalog["eiffel tower"]])


def test_cnn_judge_refuses_bad_files(tmp_path):
    import json
    from detectors.cnn_judge import load_judge
    folder = _judge_folder(tmp_path)
    meta = json.loads((folder / "judge.json").read_text())
    (folder / "judge.json").write_text(json.dumps({**meta, "format": "other/9"}))
    with pytest.raises(EraselabError, match="format 'other/9'"):
        load_judge(str(folder))
    (folder / "judge.json").write_text(json.dumps({**meta, "widths": [8, 16]}))
    with pytest.raises(EraselabError, match="does not match judge.json"):
        load_judge(str(folder))
    (folder / "judge.json").write_text(json.dumps(meta))
    (folder / "judge.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(EraselabError, match="unreadable safetensors"):
        load_judge(str(folder))


# -- degradations -----------------------------------------------------------------------------
def test_degradations_are_seeded_and_do_what_they_say():
    from bench.miniworld import render as mw
    from bench.miniworld.degrade import OCCLUDED_FRACTION, degrade
    sample = mw.render("church", "plain", 3)
    image, box = sample.image, tuple(sample.boxes[0][1:5])
    faint = degrade("contrast", image, box, np.random.default_rng(0))
    assert faint.astype(float).std() < 0.5 * image.astype(float).std()
    blurred = degrade("blur", image, box, np.random.default_rng(0))
    assert np.abs(np.diff(blurred.astype(float), axis=1)).mean() < np.abs(np.diff(image.astype(float), axis=1)).mean()
    a = degrade("occlusion", image, box, np.random.default_rng(5))
    b = degrade("occlusion", image, box, np.random.default_rng(5))
    assert np.array_equal(a, b)
    changed = (a != image).any(axis=2)
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    assert changed.sum() == changed[y0:y1, x0:x1].sum() > 0  # only inside the box
    # the patch spans the box one way and the fraction the other (pixels already of the
    # patch's colour do not change)
    assert changed.sum() <= OCCLUDED_FRACTION * w * h + max(w, h)
    assert degrade("clean", image, box, None) is image
    with pytest.raises(EraselabError, match="unknown degradation"):
        degrade("fog", image, box, np.random.default_rng(0))


# -- the model card's judges section ---------------------------------------------------------
def test_card_only_sections_need_a_recorded_card(tmp_path):
    from bench.miniworld.evaluate import evaluate_and_write_card
    with pytest.raises(EraselabError, match="unknown card section"):
        evaluate_and_write_card(out=tmp_path, only=["bogus"])
    with pytest.raises(EraselabError, match="no recorded card"):
        evaluate_and_write_card(out=tmp_path, only=["judges"])
    (tmp_path / "eval.json").write_text('{"n_per_concept": 32, "sections": {}}')
    with pytest.raises(EraselabError, match="recorded at 32 images per concept"):
        evaluate_and_write_card(out=tmp_path, only=["judges"], n_per_concept=64)


def test_card_lists_each_judges_recall_per_degradation():
    from bench.miniworld.evaluate import _judges_card
    ci = lambda m: {"mean": m, "lo": m - 0.05, "hi": m + 0.05, "n": 64}  # noqa: E731
    section = {"degradations": ["clean", "vae"], "n_distractors": 64, "judges": {
        "miniworld-yolo (objects)": {"recall": {"clean": ci(0.97), "vae": ci(0.61)},
                                     "false_alarm": {"clean": ci(0.02), "vae": ci(0.4)}}}}
    text = "\n".join(_judges_card(section))
    assert "| judge | clean | vae |" in text
    assert "| miniworld-yolo (objects) | 97.0% [92%, 102%] | 61.0% [56%, 66%] |" in text
    assert "| miniworld-yolo (objects) | 2.0% | 40.0% |" in text
