"""The report's study section (reports/studies.py, reports/study_figures.py) on synthetic runs
with exact, known detection rates (reports.synthetic.make_study_run): the table, the heat map
and the curve show those values, the Pareto front and the answer follow from them.

    python -m pytest tests/test_studies.py -q
"""

from __future__ import annotations

import pytest

ARMS = {"te-mlp": (0.2, 0.85), "te-attn": (0.8, 0.9), "te-layer0-mlp": (0.5, 0.9),
        "te-layer0-attn": (0.9, 0.9), "te-layer1-mlp": (0.3, 0.6), "te-layer1-attn": (0.7, 0.8)}


def _studies(folder):
    from reports.metrics import summarize
    from reports.rundata import load_run
    from reports.studies import find_studies
    run = load_run(folder)
    return run, find_studies(run, summarize(run))


@pytest.fixture(scope="module")
def ablation(tmp_path_factory):
    from reports.synthetic import make_study_run
    return make_study_run(tmp_path_factory.mktemp("ablation"), ARMS)


def test_study_rows_carry_the_known_rates_and_paired_changes(ablation):
    _, studies = _studies(ablation)
    assert len(studies) == 1
    study = studies[0]
    assert [a.label for a in study.arms] == list(ARMS)
    for arm in study.arms:
        target, unrelated = ARMS[arm.label]
        assert arm.target.value == pytest.approx(target) and arm.unrelated.value == pytest.approx(unrelated)
        assert arm.target.delta == pytest.approx(target - 0.9)  # the original detects 90%
        assert arm.unrelated.delta == pytest.approx(unrelated - 0.9)
        assert arm.target.has_interval and arm.target.delta_lo <= arm.target.delta <= arm.target.delta_hi
    by = {a.label: a for a in study.arms}
    # an arm identical to the original has no effect; -70 points over 160 pairs is significant
    assert by["te-layer0-attn"].verdicts["target"] == "no difference"
    assert by["te-mlp"].verdicts["target"] == "better" and by["te-mlp"].p_adj["target"] < 1e-6
    assert by["te-layer1-mlp"].verdicts["unrelated"] == "worse"


def test_pareto_front_and_answer(ablation):
    from reports.studies import answer, pareto_front
    _, (study,) = _studies(ablation)
    assert [a.label for a in pareto_front(study.arms)] == ["te-mlp", "te-layer0-mlp"]
    text = answer(study)
    assert text.startswith("MLPs alone erase more")
    assert "-70 pt" in text and "-10 pt" in text and "-60 pt" in text  # each arm, and MLP minus attention
    assert text.endswith("of 4 single-layer arms, te-layer0-mlp, te-layer1-mlp, te-layer1-attn erase "
                         "(target changes -60 pt to +0 pt).")
    target = next(c for c in study.contrasts if c["prompt_set"] == "target")
    assert target["delta"] == pytest.approx(-0.6) and target["delta_hi"] < 0 and target["p_adj"] < 0.05


def test_answer_says_when_the_mini_world_cannot_tell(tmp_path):
    from reports.studies import answer
    from reports.synthetic import make_study_run
    folder = make_study_run(tmp_path, {"te-mlp": (0.5, 0.9), "te-attn": (0.5, 0.9)})
    _, (study,) = _studies(folder)
    assert answer(study).startswith("The mini world cannot tell MLPs alone from attention alone in erasure")


def test_layer_heat_map_shows_each_layers_change(ablation):
    from reports.studies import layer_grid
    from reports.study_figures import layer_heatmap_figure
    _, (study,) = _studies(ablation)
    layers, cells = layer_grid(study)
    assert layers == [0, 1] and set(cells) == {(0, "mlp"), (0, "attn"), (1, "mlp"), (1, "attn")}
    fig = layer_heatmap_figure(study)
    left, right = fig.axes[:2]
    grid = left.images[0].get_array()
    assert grid[0][0] == pytest.approx(-40) and grid[0][1] == pytest.approx(0)    # layer 0: mlp, attn
    assert grid[1][0] == pytest.approx(-60) and grid[1][1] == pytest.approx(-20)  # layer 1
    assert right.images[0].get_array()[1][0] == pytest.approx(-30)
    texts = [t.get_text().split("\n")[0] for t in left.texts]
    assert texts == ["-40", "+0", "-60", "-20"]


def test_sweep_curve_plots_the_swept_values(tmp_path):
    from reports.study_figures import curve_figure, layer_heatmap_figure
    from reports.synthetic import make_study_run
    shots = {1: (0.8, 0.9), 2: (0.6, 0.9), 4: (0.3, 0.85), 8: (0.2, 0.8), 16: (0.1, 0.7)}
    folder = make_study_run(tmp_path, shots, swept_key="k", study="shots")
    _, (study,) = _studies(folder)
    assert study.is_curve and study.keys == ("k",)
    fig = curve_figure(study)
    ax = fig.axes[0]
    lines = {l.get_label(): l for l in ax.get_lines()}
    assert list(lines["target prompts"].get_xdata()) == [1, 2, 4, 8, 16]
    assert list(lines["target prompts"].get_ydata()) == pytest.approx([80, 60, 30, 20, 10])
    assert list(lines["unrelated prompts"].get_ydata()) == pytest.approx([90, 90, 85, 80, 70])
    assert lines["original, target"].get_ydata()[0] == pytest.approx(90)
    assert ax.get_xscale() == "log"
    assert layer_heatmap_figure(study) is None  # no per-layer arms
    from reports.studies import answer
    assert answer(study).startswith("k=16 erases more than k=1")  # the sweep's ends, paired: -70 pt
    assert "-70 pt" in answer(study)


def test_a_transfer_is_answered_against_erasing_the_model_itself(tmp_path):
    from reports.studies import answer
    from reports.synthetic import make_study_run
    folder = make_study_run(tmp_path, {1: (0.3, 0.9), 2: (0.6, 0.9)}, swept_key="lr",
                            transfer_from={2: "model-a"})
    _, (study,) = _studies(folder)
    text = answer(study)
    assert text.startswith("Erasing mini-sd itself erases more than the text encoder erased on model-a")
    assert "-30 pt" in text and "-60 pt" in text and "+30 pt" in text  # transferred, direct, their difference


def test_report_has_a_study_section(ablation, tmp_path):
    from reports.build import build_report
    out = build_report(ablation, out=tmp_path / "report")
    html = out.read_text()
    assert '<h2 id="studies">Studies</h2>' in html and "MLPs alone erase more" in html
    md = (out.parent / "report.md").read_text()
    assert "## Studies" in md and "| te-layer1-mlp |" in md
    for name in ("study-01-pareto", "study-01-layers", "study-01-change"):
        assert (out.parent / "figures" / f"{name}.png").is_file()
    assert (out.parent / "tables" / "study-01.md").is_file()


def test_a_run_without_arms_has_no_study_section(tmp_path):
    from reports.synthetic import make_run
    _, studies = _studies(make_run(tmp_path))
    assert studies == []
