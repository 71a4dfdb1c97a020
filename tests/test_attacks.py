"""Attacks and probes (attacks/) and the robustness study (bench/runner/robustness*.py,
bench/robustness.py, reports/robustness*.py), on the tiny pipeline.

    pytest tests/test_attacks.py -q
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from attacks import ATTACKS, TABLE
from attacks.base import KINDS, Found, get_probe, run_attack
from bench.catalog import load_catalog
from bench.core.errors import EraselabError
from bench.tiny import tiny_pipeline

CATALOG = load_catalog("miniworld")
OPTIMISED = [name for name, _, _ in TABLE if get_probe(name).kind in ("text", "embedding")]
PROMPT_PROBES = [name for name, _, _ in TABLE if get_probe(name).kind == "prompt"]


def _images(n=2):
    return [Image.fromarray((np.random.default_rng(i).random((32, 32, 3)) * 255).astype("uint8")) for i in range(n)]


def _weights(pipe):
    return {n: p.detach().clone() for n, p in pipe.unet.named_parameters()} | \
           {n: p.detach().clone() for n, p in pipe.text_encoder.named_parameters()}


# --- the registry ------------------------------------------------------------------------
def test_every_probe_is_registered_with_a_kind():
    assert set(ATTACKS.names()) == {name for name, _, _ in TABLE}
    for name, target, _ in TABLE:
        cls = get_probe(name)
        assert cls.name == name and cls.kind in KINDS, name
        # an optimised attack differentiates through the edited model or searches the original encoder
        assert (cls.kind in ("text", "embedding")) == (cls.white_box or cls.needs_original_text_encoder)
        assert (cls.kind == "image") == cls.draws_images


# --- prompt probes -----------------------------------------------------------------------
@pytest.mark.parametrize("name", PROMPT_PROBES)
def test_prompt_probes_are_deterministic_and_avoid_the_evaluation_wording(name):
    probe = get_probe(name)()
    for concept in CATALOG.concepts.values():
        if probe.not_applicable_concept(concept):
            assert probe.prompts(concept, CATALOG, 4, 0) == []
            continue
        first, again = probe.prompts(concept, CATALOG, 4, 0), probe.prompts(concept, CATALOG, 4, 0)
        assert first == again and 0 < len(first) <= 4 and len(set(first)) == len(first)
        assert not set(first) & set(concept.prompts()), (name, concept.name)  # never a plain target prompt
        if name == "description":
            assert all(concept.name not in p for p in first)


def test_a_probe_that_cannot_apply_says_why_in_one_line():
    snoopy = CATALOG["snoopy"]
    reason = get_probe("translation")().not_applicable_concept(snoopy)
    assert "snoopy" in reason and "translations" in reason and "\n" not in reason
    from methods import METHODS
    for name in OPTIMISED:
        line = get_probe(name)().not_applicable(METHODS.get("negative-prompt"))
        if get_probe(name).white_box:
            assert "inference-time" in line and "\n" not in line
        else:  # a black-box search's text reaches an inference-time filter too
            assert line is None
        assert get_probe(name)().not_applicable(METHODS.get("esd-x")) is None


def test_surface_variants_change_only_the_name():
    from attacks.prompt_probes import surface_variants
    import random
    variants = surface_variants("church", random.Random(0))
    assert "CHURCH" in variants and "church" not in variants
    assert any(len(v) == len("church") - 1 for v in variants)  # a dropped letter


def test_inpainting_fills_only_the_masked_centre_deterministically():
    from attacks.inpainting import Inpainting, InpaintingConfig, centre_mask
    from methods import METHODS
    pipe = tiny_pipeline()
    probe = Inpainting()
    images = [Image.new("RGB", (32, 32), (200, 30, 30)), Image.new("RGB", (32, 32), (30, 30, 200))]
    a = probe.draw(pipe, "a church", [1, 2], images, InpaintingConfig(), 3, 6.0)
    b = probe.draw(pipe, "a church", [1, 2], images, InpaintingConfig(), 3, 6.0)
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b))
    c = probe.draw(pipe, "a church", [5, 2], images, InpaintingConfig(), 3, 6.0)
    assert not np.array_equal(np.asarray(a[0]), np.asarray(c[0]))  # the seed decides the fill
    assert np.array_equal(np.asarray(a[1]), np.asarray(c[1]))      # and only its own image's
    mask = centre_mask(8, 0.25)
    assert mask.sum() == 16 and mask[0, 0] == 0 and mask[4, 4] == 1
    assert "inference-time" in probe.not_applicable(METHODS.get("sld"))
    from attacks.inpainting import MaskedContext
    masked = MaskedContext().draw(pipe, "a church", [1], images[:1], InpaintingConfig(), 3, 6.0)[0]
    m = np.asarray(masked)
    assert (m[m.shape[0] // 2, m.shape[1] // 2] == 128).all() and (m[0, 0] == (200, 30, 30)).all()
    assert MaskedContext().not_applicable(METHODS.get("sld")) is None


class _BrightnessClip:
    """A stand-in selector: an image's score is its mean brightness (text ignored)."""

    def encode_texts(self, texts):
        return torch.ones(len(texts), 1)

    def encode_images(self, images):
        return torch.tensor([[float(np.asarray(im, dtype=np.float32).mean())] for im in images])


def test_the_noise_probe_keeps_the_best_draw_and_best_of_n_shares_its_seeds():
    from attacks.noise import BestOfN, NoiseProbe, draw_seed
    from attacks.sampling import ddim_sample, decode, generators_for
    from attacks.base import resolve_probe_config
    from methods.common import encode_prompts
    pipe, clip = tiny_pipeline(), _BrightnessClip()
    seeds = [1, 2]
    noisy = resolve_probe_config(NoiseProbe, "mini", {"etas": [1.0, 1.85], "variance_scales": [1.04]})
    got = NoiseProbe().draw(pipe, "a church", seeds, [], noisy, 3, 6.0, clip=clip)
    again = NoiseProbe().draw(pipe, "a church", seeds, [], noisy, 3, 6.0, clip=clip)
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(got, again))
    cond, uncond = encode_prompts(pipe, ["a church"] * 2), encode_prompts(pipe, [""] * 2)
    candidates = [decode(pipe, ddim_sample(pipe, cond, uncond, generators_for([draw_seed(s, j) for s in seeds]),
                                           3, 6.0, eta=eta, variance_scale=1.04))
                  for j, eta in enumerate((1.0, 1.85))]
    for i in range(2):  # image i is the brighter of its two draws, each from its own seed
        best = max((c[i] for c in candidates), key=lambda im: np.asarray(im, dtype=np.float32).mean())
        assert np.array_equal(np.asarray(got[i]), np.asarray(best))
        assert np.isfinite(np.asarray(got[i], dtype=np.float32)).all()
    # eta 0 twice is best-of-2 plain DDIM: the same draws, seeds and selector as best-of-n
    plain = resolve_probe_config(NoiseProbe, "mini", {"etas": [0.0], "variance_scales": [1.0, 1.0]})
    control = resolve_probe_config(BestOfN, "mini", {"n": 2})
    a = NoiseProbe().draw(pipe, "a church", seeds, [], plain, 3, 6.0, clip=clip)
    b = BestOfN().draw(pipe, "a church", seeds, [], control, 3, 6.0, clip=clip)
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b))
    with pytest.raises(EraselabError, match="evaluation CLIP"):
        NoiseProbe().draw(pipe, "a church", seeds, [], noisy, 3, 6.0)


def test_best_of_n_has_the_noise_probes_n_in_every_family():
    from attacks.base import resolve_probe_config
    from attacks.noise import BestOfN, NoiseProbe
    from methods.defaults import FAMILIES
    for family in FAMILIES:
        assert (len(resolve_probe_config(NoiseProbe, family).draws)
                == len(resolve_probe_config(BestOfN, family).draws)), family


def test_p4d_lays_out_its_tokens_and_fills_them_back_as_text():
    from attacks.p4d import P4DConfig, fill_text, layout_prompt
    tok = tiny_pipeline().tokenizer
    assert layout_prompt(tok, "a photo of a church", P4DConfig(tokens=5)) == "* * * * *"
    k = layout_prompt(tok, "a photo of a church", P4DConfig(layout="k", every=3))
    assert k.count("*") == -(-len(tok("a photo of a church").input_ids[1:-1]) // 3)
    assert fill_text(tok, "x * y *", [tok("a").input_ids[1], tok("b").input_ids[1]]) == "x a y b"


# --- found embeddings in prompts ---------------------------------------------------------
def test_placeholders_fill_only_the_star_positions_with_their_vector():
    from attacks.placeholders import Placeholders
    from methods.common import encode_ids, tokenize
    pipe = tiny_pipeline()
    ids = tokenize(pipe, ["* a church", "a church", ""])
    d = pipe.text_encoder.config.hidden_size
    plain = encode_ids(pipe.text_encoder, ids).detach()
    vec = torch.full((1, d), 3.0, requires_grad=True)
    with Placeholders(pipe.text_encoder, pipe.tokenizer, vec):
        filled = encode_ids(pipe.text_encoder, ids)
    assert not torch.allclose(filled[0], plain[0])
    assert torch.allclose(filled[1:], plain[1:])  # no '*': untouched (the unconditional too)
    filled[0].sum().backward()
    assert vec.grad is not None and vec.grad.abs().sum() > 0
    assert torch.allclose(encode_ids(pipe.text_encoder, ids), plain)  # the hook is gone


def test_simplex_projection():
    from attacks.unlearndiff import project_simplex
    w = torch.randn(3, 50, generator=torch.Generator().manual_seed(0))
    p = project_simplex(w)
    assert torch.all(p >= 0) and torch.allclose(p.sum(dim=1), torch.ones(3), atol=1e-5)
    assert torch.allclose(project_simplex(p), p, atol=1e-6)


# --- optimised attacks on the tiny pipeline ----------------------------------------------
# A budget on which each attack has room to move (the tiny model's quick budgets barely do).
# P4D selects by CLIP among its evaluations; one evaluation (the last step) makes its finding the
# optimised projection, whose objective the battery checks
P4D_BUDGET = {"iterations": 20, "eval_every": 20, "eval_steps": 2, "images": 2, "batch": 2, "tokens": 4}
BUDGET = {"unlearndiff": {"timesteps": 3, "iterations": 6, "images": 2, "lr": 0.05},
          "soft-prompt": {"steps": 25, "lr": 0.05, "images": 2, "batch": 2},
          "concept-inversion": {"steps": 25, "lr": 0.05, "images": 2, "batch": 2},
          "ring-a-bell": {"k": 4, "population": 16, "generations": 10, "pairs": 2},
          "p4d-n": P4D_BUDGET, "p4d-k": P4D_BUDGET}


def _smoke_clip():
    from bench.runner.smoke import register_clip
    from detectors.clip_backend import load_clip
    return load_clip(register_clip(), None, "cpu", None)


@pytest.mark.parametrize("name", OPTIMISED)
def test_an_attack_is_deterministic_leaves_the_model_alone_and_lowers_its_objective(name):
    pipe = tiny_pipeline()
    before = _weights(pipe)
    flags = {n: p.requires_grad for n, p in pipe.unet.named_parameters()}
    church = CATALOG["church"]
    clip = _smoke_clip() if get_probe(name).needs_selector else None
    a = run_attack(pipe, name, church, "a photo of a church", seed=3, overrides=BUDGET[name], images=_images(),
                   clip=clip)
    b = run_attack(pipe, name, church, "a photo of a church", seed=3, overrides=BUDGET[name], images=_images(),
                   clip=clip)
    assert a.prompt == b.prompt and a.objective_after == b.objective_after
    if a.vectors is not None:
        assert torch.equal(a.vectors, b.vectors)
        assert "*" in a.prompt
    assert a.objective_after < a.objective_before, (a.objective_before, a.objective_after)
    after = _weights(pipe)
    assert all(torch.equal(before[n], after[n]) for n in before)
    assert flags == {n: p.requires_grad for n, p in pipe.unet.named_parameters()}


def test_a_non_finite_objective_stops_with_one_line(monkeypatch):
    from attacks import objective
    monkeypatch.setattr(objective.DenoisingObjective, "loss",
                        lambda self, *a, **k: torch.tensor(float("nan"), requires_grad=True))
    with pytest.raises(EraselabError, match=r"soft-prompt: objective became nan at step 1/"):
        run_attack(tiny_pipeline(), "soft-prompt", CATALOG["church"], "a church", seed=0,
                   overrides={"steps": 2}, images=_images())


def test_found_saves_and_loads_as_json_and_safetensors(tmp_path):
    found = Found(prompt="* a church", vectors=torch.ones(1, 4), objective_before=2.0, objective_after=1.0, steps=3)
    found.save(tmp_path / "job", {"probe": "soft-prompt"})
    assert json.loads((tmp_path / "job" / "found.json").read_text())["probe"] == "soft-prompt"
    back = Found.load(tmp_path / "job")
    assert back.prompt == found.prompt and torch.equal(back.vectors, found.vectors)
    assert back.vectors.data_ptr() % 64 == 0  # its own aligned memory: computes as the in-memory vectors
    (tmp_path / "job" / "vectors.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(EraselabError, match="unreadable safetensors"):
        Found.load(tmp_path / "job")


@pytest.mark.parametrize("overrides,message", [({"stepz": 3}, "unknown config key 'stepz'"),
                                                ({"steps": "many"}, "expected an int"),
                                                ({"lr": -1.0}, "lr > 0")])
def test_a_bad_attack_config_is_one_line(overrides, message):
    with pytest.raises(EraselabError, match=message):
        run_attack(tiny_pipeline(), "soft-prompt", CATALOG["church"], "a church", seed=0, overrides=overrides,
                   images=_images())


# --- the suite section ------------------------------------------------------------------
SUITE = """
suite: rb
catalog: miniworld
smoke_sized: true
models: [{id: miniworld, path: miniworld}]
methods: [{name: original}, {name: fewshot-te}, {name: negative-prompt}]
concepts: [church]
prompt_sets: {target: {prompts: 2, samples: 2}}
sampler: {scheduler: dpm, steps: 2, guidance: 6.0, resolution: null, batch_size: 8}
scorers: [clip-score]
preservation: []
seeds: [0]
robustness:
  arms: [fewshot-te, negative-prompt]
  probes: [surface, translation, soft-prompt, unlearndiff, ring-a-bell, inpainting, noise, best-of-n, p4d-k]
  prompts: 1
  samples: 2
  budgets: {soft-prompt: {steps: 2}}
"""


@pytest.mark.parametrize("old,new,message", [
    ("probes: [surface,", "probes: [surfac,", "unknown probe 'surfac'"),
    ("arms: [fewshot-te,", "arms: [fewshot,", "no arm 'fewshot'"),
    ("{soft-prompt: {steps: 2}}", "{soft-prompt: {stepz: 2}}", "unknown config key 'stepz'"),
    ("{soft-prompt: {steps: 2}}", "{surface: {steps: 2}}", "prompt probe: it has no budget"),
    ("{soft-prompt: {steps: 2}}", "{concept-inversion: {steps: 2}}", "not a probe of this section"),
    ("  samples: 2\n  budgets", "  samples: 0\n  budgets", "robustness.samples"),
])
def test_a_bad_robustness_section_is_one_line(tmp_path, old, new, message):
    from bench.runner.suite import validate_suite_file
    text = SUITE.replace(old, new)
    assert text != SUITE
    path = tmp_path / "s.yaml"
    path.write_text(text)
    problems = validate_suite_file(path)
    assert len(problems) == 1 and message in problems[0] and "\n" not in problems[0], problems


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    from bench.runner.run import run_suite
    from bench.suite import load_suite
    folder = tmp_path_factory.mktemp("rb")
    (folder / "s.yaml").write_text(SUITE)
    out = folder / "run"
    first = run_suite(load_suite(folder / "s.yaml"), out, smoke=True, progress=False)
    again = run_suite(load_suite(folder / "s.yaml"), out, smoke=True, progress=False)
    return out, first, again


def test_the_study_runs_stores_what_it_found_and_resumes_without_attacking_again(study):
    out, first, again = study
    # 3 white-box attacks and 3 non-text probes x (fewshot-te, the original), one ring-a-bell search
    assert first["complete"] and first["attacked"] == 13
    assert again.get("attacked", 0) == 0 and again["generated"] == 0
    record = json.loads((out / "robustness.json").read_text())
    assert len(record["attacks"]) == 13 and record["compare_with"] == {"noise": "best-of-n"}
    rows_of = pd.read_parquet(out / "results.parquet")
    rab = rows_of[rows_of["probe"] == "ring-a-bell"]
    assert set(rab["probe_arm"]) == {"original", "fewshot-te", "negative-prompt"}
    assert rab["attack_prompt"].nunique() == 1 and rab["attack_job"].nunique() == 1
    soft = [a for a in record["attacks"] if a["probe"] == "soft-prompt"]
    assert all((out / "attacks" / a["job"] / "vectors.safetensors").is_file() for a in soft)
    reasons = {(n["arm"], n["probe"]): n["reason"] for n in record["not_applicable"]}
    assert set(reasons) == {("negative-prompt", p) for p in ("soft-prompt", "unlearndiff", "inpainting", "noise",
                                                             "best-of-n", "p4d-k")}
    rows = pd.read_parquet(out / "results.parquet")
    attacked = rows[rows["probe"] == "soft-prompt"]
    assert set(attacked["attack_prompt"]) == {"* a photo of a church"}
    assert len(attacked) == 2 * 2  # (fewshot-te, original) x the base prompt's 2 samples
    translated = rows[rows["probe"] == "translation"]["prompt"]
    assert translated.str.contains("Kirche|église|iglesia|chiesa").all()


def test_the_report_has_the_robustness_sections(study):
    from reports.build import build_report
    out, _, _ = study
    build_report(out)
    text = (out / "report" / "report.md").read_text()
    for title in ("Robustness: prompt probes and text attacks", "Robustness: continuous-embedding attacks",
                  "Robustness: non-text probes", "Robustness: cost of each attack"):
        assert title in text
    assert "not applicable: soft-prompt optimises against the edited weights" in text


# --- the analysis on a synthetic table ----------------------------------------------------
def _row(arm, method, variant, probe, kind, prompt_id, sample, seed, detected, concept="church"):
    return {"model": "m", "method": method, "variant": variant, "concept": concept, "prompt_set": "target",
            "prompt_id": prompt_id, "sample": sample, "suite_seed": seed, "detected": detected,
            "probe": probe, "probe_kind": kind, "probe_arm": arm}


def test_the_attack_success_table_reads_known_values():
    from bench.robustness import ALL, robustness_table
    rows = []
    for seed in (0, 1):
        for s in range(10):
            # plain: the arm detects 2 of 10, the original 9 of 10
            rows.append(_row(None, "esd-x", "", None, None, "p1", s, seed, s < 2))
            rows.append(_row(None, "original", "", None, None, "p1", s, seed, s < 9))
            # the attack on the arm: 7 of 10 (every plain success kept); on the original 10 of 10
            rows.append(_row("esd-x", "esd-x", "attack soft-prompt", "soft-prompt", "embedding", "p1", s, seed, s < 7))
            rows.append(_row("original", "original", "attack soft-prompt", "soft-prompt", "embedding", "p1", s, seed,
                             True))
    table = robustness_table(pd.DataFrame(rows), {"not_applicable": [
        {"model": "m", "arm": "sld", "concept": "church", "probe": "soft-prompt", "kind": "embedding",
         "reason": "no weights"}]})
    arm = table[(table["arm"] == "esd-x") & (table["concept"] == ALL)].iloc[0]
    assert arm["pre"] == pytest.approx(0.2) and arm["post"] == pytest.approx(0.7)
    assert arm["lift"] == pytest.approx(0.5) and arm["lift_lo"] > 0 and arm["verdict"] == "comes back"
    assert arm["union"] == pytest.approx(0.7) and arm["control_post"] == pytest.approx(1.0)
    assert arm["vs_control"] == pytest.approx(-0.3) and arm["n"] == 20
    na = table[table["arm"] == "sld"].iloc[0]
    assert na["verdict"] == "not applicable" and na["reason"] == "no weights"
    control = table[(table["arm"] == "original") & (table["concept"] == ALL)].iloc[0]
    assert control["verdict"] == "control" and math.isnan(control.get("vs_control", math.nan))


def test_a_best_of_n_probe_is_measured_against_its_control_not_single_images():
    from bench.robustness import ALL, robustness_table
    rows = []
    for seed in (0, 1):
        for s in range(10):
            rows.append(_row(None, "esd-x", "", None, None, "p1", s, seed, s < 2))        # plain: 2 of 10
            rows.append(_row(None, "original", "", None, None, "p1", s, seed, True))
            # best of N plain draws already 6 of 10; the noisier best of N 7 of 10
            rows.append(_row("esd-x", "esd-x", "probe best-of-n", "best-of-n", "image", "p1", s, seed, s < 6))
            rows.append(_row("esd-x", "esd-x", "probe noise", "noise", "image", "p1", s, seed, s < 7))
            for probe in ("best-of-n", "noise"):
                rows.append(_row("original", "original", f"probe {probe}", probe, "image", "p1", s, seed, True))
    table = robustness_table(pd.DataFrame(rows), {"compare_with": {"noise": "best-of-n"}})
    pick = table[(table["arm"] == "esd-x") & (table["concept"] == ALL)].set_index("probe")
    noise, control = pick.loc["noise"], pick.loc["best-of-n"]
    assert noise["pre_from"] == "best-of-n" and noise["pre"] == pytest.approx(0.6)
    assert noise["lift"] == pytest.approx(0.1) and noise["verdict"] == "holds"
    assert control["pre_from"] == "plain" and control["lift"] == pytest.approx(0.4)
    assert noise["control_pre"] == pytest.approx(1.0)


# --- the command ---------------------------------------------------------------------------
def test_the_attack_command_prints_prompts_and_refuses_bad_input_in_one_line(tmp_path, capsys):
    from bench.cli import main
    assert main(["attack", "--probe", "surface", "--concept", "church", "--n", "3"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 3
    assert main(["attack", "--probe", "translation", "--concept", "snoopy"]) == 1
    assert "no translations" in capsys.readouterr().err
    assert main(["attack", "--probe", "soft-prompt", "--concept", "church", "--set", "stepz=1",
                 "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "unknown config key 'stepz'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
