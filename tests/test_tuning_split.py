"""benchmarks/tune_method.py, which chooses the mini-world defaults (methods/defaults.py): the tuning
split stays apart from what the benchmark evaluates, the selection rule is the one its docstring
states, and a partial sweep resumes only into the same sweep."""

import json

import pytest

from bench.catalog import load_catalog
from bench.runner.plan import concept_prompts
from bench.runner.suite import load_suite
from benchmarks import tune_method


def _setting(steps, lr, target, unrelated):
    return {"overrides": {"steps": steps, "lr": lr}, "target": target, "unrelated": unrelated}


def test_tuning_prompts_are_no_evaluation_prompt():
    catalog = load_catalog("miniworld")
    evaluated = {p for c in catalog.concepts.values() for p in c.prompts()}
    for suite_name in ("mini-default", "mini-methods", "mini-full"):
        suite = load_suite(suite_name)
        for concept in suite.concepts:
            evaluated |= {p.text for ps in concept_prompts(suite, concept).values() for p in ps}
    tuning = {p for ps in tune_method.TARGET_PROMPTS.values() for p in ps}
    tuning |= {p for p, _ in tune_method.UNRELATED_PROMPTS}
    assert tuning and not tuning & evaluated


def test_tuning_concepts_are_not_in_the_issue_table_or_the_main_job():
    reported = set(load_suite("mini-methods").concepts) | set(load_suite("mini-default").concepts)
    assert not set(tune_method.TUNING_CONCEPTS) & reported
    catalog = load_catalog("miniworld")
    for prompt, subject in tune_method.UNRELATED_PROMPTS:  # unrelated to every tuning concept
        for name in tune_method.TUNING_CONCEPTS:
            concept = catalog[name]
            assert subject not in {name, concept.parent, *concept.related}, (prompt, name)


def test_rule_keeps_unrelated_prompts_then_lowest_target_then_cheapest():
    original = {"target": 0.7, "unrelated": 0.7}
    settings = [_setting(40, 1e-3, 0.0, 0.5),     # erases everything, breaks unrelated: out
                _setting(40, 1e-4, 0.10, 0.65),   # within 10 points
                _setting(8, 1e-4, 0.12, 0.70),    # ties with the above (within 1/16): fewer steps
                _setting(8, 1e-5, 0.60, 0.70)]
    assert tune_method.choose(settings, original, ["steps", "lr"])["overrides"] == {"steps": 8, "lr": 1e-4}
    assert tune_method.choose(settings[:1], original, ["steps", "lr"]) is None
    # not a tie any more: the lower target wins although it costs more steps
    settings[2]["target"] = 0.20
    assert tune_method.choose(settings, original, ["steps", "lr"])["overrides"] == {"steps": 40, "lr": 1e-4}


def test_rule_text_is_the_docstrings():
    assert tune_method._rule_text().startswith("among settings whose unrelated detection rate")


@pytest.mark.parametrize("change, kept", [({}, [8, 40]), ({"grid": {"steps": [8, 100]}}, [8]),
                                          ({"method": "esd-x"}, None), ({"model": "other"}, None),
                                          ({"model_fingerprint": "miniworld:other-weights"}, None)])
def test_earlier_results_are_reused_only_for_the_same_sweep(tmp_path, change, kept):
    """Same method, model and split: the settings the new grid holds are reused (resume, or an
    extended grid); anything else measures again."""
    report = {"method": "ga", "grid": {"steps": [8, 40]}, "model": "m",
              "model_fingerprint": "miniworld:0123", "tuning_concepts": ["a"],
              "target_prompts": {"a": ["p"]}, "unrelated_prompts": ["q"]}
    settings = [{"overrides": {"steps": 8}}, {"overrides": {"steps": 40}}]
    earlier = {**report, "original": {}, "settings": settings, "complete": True}  # or partial
    path = tmp_path / "tune.json"
    path.write_text(json.dumps(earlier))
    new = {**report, **change}
    reused = tune_method._resumable(str(path), new)
    if kept is None:
        assert reused is None
    else:
        assert [s["overrides"]["steps"] for s in reused["settings"]] == [s for s in kept if s in new["grid"]["steps"]]
    assert tune_method._resumable(str(tmp_path / "missing.json"), report) is None


def test_grid_parsing():
    assert tune_method.parse_grid(["steps=8,40", "lr=1e-5,1e-4"]) == {"steps": [8, 40], "lr": [1e-5, 1e-4]}
    with pytest.raises(SystemExit, match="key=value1"):
        tune_method.parse_grid(["steps"])
