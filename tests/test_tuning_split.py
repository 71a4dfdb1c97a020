"""bench/tuning.py (``eraselab tune``), which chooses the mini-world defaults (methods/defaults.py):
the tuning split stays apart from what the benchmark evaluates and is large enough to place its
tolerance, the selection rule is the one its docstring states, a bad grid is a one-line error
before any model loads, and a partial sweep resumes only into the same sweep."""

import json

import pytest

from bench import tuning
from bench.catalog import load_catalog
from bench.cli import main as cli
from bench.core.errors import EraselabError
from bench.runner.plan import concept_prompts
from bench.runner.suite import SUITE_DIR, load_suite

SUITES = sorted(p.stem for p in SUITE_DIR.glob("mini-*.yaml"))


def _setting(steps, lr, target, unrelated):
    return {"overrides": {"steps": steps, "lr": lr}, "target": target, "unrelated": unrelated}


def test_tuning_prompts_are_no_evaluation_prompt():
    catalog = load_catalog("miniworld")
    evaluated = {p for c in catalog.concepts.values() for p in c.prompts()}
    for suite_name in SUITES:
        suite = load_suite(suite_name)
        for concept in suite.concepts:
            evaluated |= {p.text for ps in concept_prompts(suite, concept).values() for p in ps}
    tuning_prompts = {p for ps in tuning.TARGET_PROMPTS.values() for p in ps}
    tuning_prompts |= {p for p, _ in tuning.unrelated_prompts()}
    assert tuning_prompts and not tuning_prompts & evaluated


def test_tuning_concepts_are_in_no_mini_suite_but_mini_full():
    reported = {c for s in SUITES if s != "mini-full" for c in load_suite(s).concepts}
    assert not set(tuning.TUNING_CONCEPTS) & reported
    catalog = load_catalog("miniworld")
    for prompt, subject in tuning.unrelated_prompts():  # unrelated to every tuning concept
        assert subject in catalog
        for name in tuning.TUNING_CONCEPTS:
            concept = catalog[name]
            near = {name, concept.parent, *concept.related, *(c.name for c in catalog.children(name))}
            assert subject not in near, (prompt, name)


def test_split_places_the_tolerance_beyond_three_standard_errors():
    """The issue's bar: 48 unrelated images put the 10-point tolerance at 1.5 standard errors."""
    n = sum(1 for c in tuning.TUNING_CONCEPTS for j in tuning.tuning_jobs(c) if j[0] == "unrelated")
    assert n == 192
    assert tuning.tolerance_in_standard_errors() > 3
    assert tuning.tolerance_in_standard_errors(48) < 2  # the old split, by the same formula
    # the three concepts' unrelated images are all different images (seeded per concept)
    seeds = [(j[1], j[3]) for c in tuning.TUNING_CONCEPTS for j in tuning.tuning_jobs(c) if j[0] == "unrelated"]
    assert len(set(seeds)) == len(seeds)


def test_rule_keeps_unrelated_prompts_then_lowest_target_then_cheapest():
    original = {"target": 0.7, "unrelated": 0.7}
    settings = [_setting(40, 1e-3, 0.0, 0.5),     # erases everything, breaks unrelated: out
                _setting(40, 1e-4, 0.10, 0.65),   # within 10 points
                _setting(8, 1e-4, 0.12, 0.70),    # ties with the above (within 1/32): fewer steps
                _setting(8, 1e-5, 0.60, 0.70)]
    assert tuning.choose(settings, original, ["steps", "lr"])["overrides"] == {"steps": 8, "lr": 1e-4}
    assert tuning.choose(settings[:1], original, ["steps", "lr"]) is None
    # not a tie any more: the lower target wins although it costs more steps
    settings[2]["target"] = 0.20
    assert tuning.choose(settings, original, ["steps", "lr"])["overrides"] == {"steps": 40, "lr": 1e-4}


def test_rule_text_is_the_docstrings():
    assert tuning.rule_text().startswith("among settings whose unrelated detection rate")
    assert "1/32" in tuning.rule_text() and abs(tuning.TIE - 1 / 32) < 1e-12


@pytest.mark.parametrize("change, reused", [({}, True), ({"grid": {"steps": [8, 100]}}, True),
                                            ({"method": "esd-x"}, False), ({"variant": "te-mlp"}, False),
                                            ({"method_version": "2"}, False),
                                            ({"base_overrides": {"lr": 1}}, False),
                                            ({"model_fingerprint": "miniworld:other-weights"}, False),
                                            ({"judges": "miniworld-judges:retrained"}, False),
                                            ({"sampler": {"steps": 25}}, False)])
def test_earlier_results_are_reused_only_for_the_same_sweep(tmp_path, change, reused):
    """Same method and version, variant, base, model, judges, split and sampler: every setting
    measured is kept (a resumed or extended grid adds to them); anything else measures again."""
    report = {"method": "ga", "method_version": "1", "variant": None, "base_overrides": {}, "grid": {"steps": [8, 40]},
              "model": "m", "model_fingerprint": "miniworld:0123", "judges": "miniworld-judges:4567",
              "split": tuning.split_description(),
              "sampler": {"steps": 12}}
    settings = [{"overrides": {"steps": 8}}, {"overrides": {"steps": 40}}]
    earlier = {**report, "original": {}, "settings": settings, "complete": True}  # or partial
    path = tmp_path / "tune.json"
    path.write_text(json.dumps(earlier))
    got = tuning._resumable(path, {**report, **change})
    assert (got is not None) == reused
    if reused:
        assert [s["overrides"]["steps"] for s in got["settings"]] == [8, 40]
    assert tuning._resumable(tmp_path / "missing.json", report) is None
    legacy = {k: v for k, v in earlier.items() if k != "method_version"}
    path.write_text(json.dumps(legacy))
    assert tuning._resumable(path, report) is not None  # recorded before versions were
    unjudged = {k: v for k, v in earlier.items() if k != "judges"}
    path.write_text(json.dumps(unjudged))
    assert tuning._resumable(path, report) is None  # which judges scored it is unknown


def test_judges_fingerprint_follows_the_judges_weights_only(tmp_path):
    def sums(digests):
        lines = [f"{d * 64}  {path}" for path, d in digests.items()]
        (tmp_path / "SHA256SUMS").write_text("\n".join(lines) + "\n")
        return tuning.judges_fingerprint(tmp_path)

    shipped = {"detector/best.safetensors": "a", "probe/probe.safetensors": "b", "clip/model.safetensors": "c",
               "judge/judge.safetensors": "d", "pipeline/unet/model.safetensors": "e", "sae/sae.safetensors": "f"}
    first = sums(shipped)
    assert sums({**shipped, "pipeline/unet/model.safetensors": "9", "sae/sae.safetensors": "8"}) == first
    for judge_file in ("detector/best.safetensors", "probe/probe.safetensors", "clip/model.safetensors",
                       "judge/judge.safetensors"):
        assert sums({**shipped, judge_file: "7"}) != first, judge_file


def test_grid_parsing_and_checking():
    assert tuning.parse_grid(["steps=8,40", "lr=1e-5,1e-4"]) == {"steps": [8, 40], "lr": [1e-5, 1e-4]}
    for bad in (["steps"], ["steps="], ["=1,2"], ["lr=1", "lr=2"]):
        with pytest.raises(EraselabError, match="--grid"):
            tuning.parse_grid(bad)
    assert len(tuning.check_grid("fewshot-te", {"steps": [8, 40], "lr": [1e-4, 1e-3]})) == 4
    with pytest.raises(EraselabError, match="empty tuning grid"):
        tuning.check_grid("fewshot-te", {})
    with pytest.raises(EraselabError, match="empty tuning grid"):
        tuning.check_grid("fewshot-te", {"lr": []})
    with pytest.raises(EraselabError, match=r"\(from --grid\).*did you mean 'lr'"):
        tuning.check_grid("fewshot-te", {"lrr": [1e-4]})
    with pytest.raises(EraselabError, match=r"\(from --set\)"):
        tuning.check_grid("fewshot-te", {"lr": [1e-4]}, base={"stepz": 4})
    with pytest.raises(EraselabError, match="te-foo"):
        tuning.check_grid("fewshot-te", {"lr": [1e-4]}, variant="te-foo")


@pytest.mark.parametrize("args, message", [(["--grid", "lrr=1"], "did you mean 'lr'"),
                                           (["--grid", "lr="], "expected key=value1"),
                                           (["--grid", "lr=1e-4", "--variant", "xattn"], "UNet subset")])
def test_tune_command_refuses_a_bad_grid_in_one_line(capsys, args, message):
    assert cli(["tune", "--method", "fewshot-te", *args]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_tune_command_refuses_a_bad_later_variant_before_tuning_any(capsys, monkeypatch):
    monkeypatch.setattr(tuning, "tune", lambda *a, **k: pytest.fail("tuned before every variant was checked"))
    args = ["tune", "--method", "fewshot-te", "--grid", "lr=1e-4", "--variant", "te-mlp", "--variant", "te-foo"]
    assert cli(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "te-foo" in err[0]


def test_tune_command_tunes_several_variants_measuring_the_original_once(tmp_path, monkeypatch):
    calls = []

    def fake_tune(method, grid, *, variant, out, original, **_):
        calls.append((variant, out, original))
        return {"original": original or {"measured by": variant}}

    monkeypatch.setattr(tuning, "tune", fake_tune)
    args = ["tune", "--method", "fewshot-te", "--grid", "lr=1e-4,3e-4", "--device", "cpu", "--out", str(tmp_path),
            "--variant", "te-layer0-mlp", "--variant", "te-layer0-attn", "--variant", "te-layer1-mlp"]
    assert cli(args) == 0
    assert [c[0] for c in calls] == ["te-layer0-mlp", "te-layer0-attn", "te-layer1-mlp"]
    assert [c[1] for c in calls] == [str(tmp_path / f"{v}.json") for v, _, _ in calls]
    assert calls[0][2] is None  # the first measures the original; the others reuse its measurement
    assert [c[2] for c in calls[1:]] == [{"measured by": "te-layer0-mlp"}] * 2
