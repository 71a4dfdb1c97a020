"""Checks of TRCE (methods/trce.py) beyond the common battery (tests/test_methods.py): stage 1
maps the concept prompt's first end-of-text key and value onto the safe prompt's and keeps the
prior rows; stage 2 changes only self-attention and the cross-attention queries; the hinge is
zero once the prediction is closer to prefer than to reject by more than the margin; bad
configs and singular systems are one-line errors.

    python -m pytest tests/test_methods_trce.py -q
"""

from __future__ import annotations

import pytest
import torch

from bench.core.errors import EraselabError
from bench.tiny import tiny_pipeline
from methods import METHODS
from methods.common import IMAGENET_TEMPLATES_SMALL, fill
from methods.delta import named_tensors
from methods.erase import erase
from methods.trce import Trce, encode_all, first_eot_rows, hinge, safe_word, stage_one, trajectory_latents

torch.set_num_threads(1)

PRIOR = ["a photo of a tower", "a photo of a golf ball"]


def quick(**overrides):
    return {**METHODS.get("trce").quick_overrides, **overrides}


def relative(a, b, ref):
    return float((a - b).norm() / ref.norm())


# --- stage 1 -------------------------------------------------------------------------------
def test_stage_one_maps_the_first_eot_onto_the_safe_prompt_and_keeps_the_prior():
    pipe = tiny_pipeline()
    names = Trce.stage_one_names(pipe)
    base = {n: named_tensors(pipe)[n].detach().clone() for n in names}
    templates = IMAGENET_TEMPLATES_SMALL[:5]
    erase_rows = first_eot_rows(pipe, [fill(t, "church") for t in templates])
    safe_rows = first_eot_rows(pipe, [fill(t, "object") for t in templates])
    prior_rows = encode_all(pipe, PRIOR)[1].flatten(0, 1).float()
    with torch.no_grad():
        stage_one(pipe, names, erase_rows, safe_rows, prior_rows, lam=1e-3, erase_scale=1.0, prior_scale=0.01)
    tensors = named_tensors(pipe)
    prior_eot = first_eot_rows(pipe, PRIOR)
    for n in names:
        W, W0 = tensors[n].detach(), base[n]
        target = safe_rows @ W0.T
        assert relative(erase_rows @ W0.T, target, target) > 0.05, n  # they did differ
        assert relative(erase_rows @ W.T, target, erase_rows @ W0.T - target) < 0.05, n
        assert relative(prior_rows @ W.T, prior_rows @ W0.T, prior_rows @ W0.T) < 0.05, n
        assert relative(prior_eot @ W.T, prior_eot @ W0.T, prior_eot @ W0.T) < 0.05, n


def test_stage_one_rows_are_the_first_end_of_text_position():
    pipe = tiny_pipeline()
    ids, hidden = encode_all(pipe, ["a church"])
    first = int((ids[0] == pipe.tokenizer.eos_token_id).nonzero()[0])
    assert first == len("achurch") + 1  # character tokens after the start token
    assert torch.equal(first_eot_rows(pipe, ["a church"])[0], hidden[0, first].float())


def test_a_singular_stage_one_system_is_a_one_line_error():
    pipe = tiny_pipeline()
    rows = first_eot_rows(pipe, ["a photo of a church"])
    with pytest.raises(EraselabError) as info:
        stage_one(pipe, Trce.stage_one_names(pipe), rows, rows, None, 0.0, 1.0, 0.01)
    assert "singular" in str(info.value) and "\n" not in str(info.value)
    # the authors' lam = 0 is singular on the tiny encoder, whose outputs span a hyperplane
    pipe = tiny_pipeline()
    before = {n: t.detach().clone() for n, t in named_tensors(pipe).items()}
    with pytest.raises(EraselabError, match=r"^trce: the stage-1 system is singular \(rank 31 of 32\)"):
        erase(pipe, "trce", "church", seed=0, progress=False, overrides=quick(lam=0.0))
    assert all(torch.equal(t.detach(), before[n]) for n, t in named_tensors(pipe).items())


def test_the_safe_word_is_the_parent_a_generic_word_or_empty_for_styles():
    from bench.catalog import load_catalog
    cat = load_catalog("miniworld")
    assert safe_word(cat["snoopy"], None) == "english springer"
    assert safe_word(cat["church"], None) == "object"
    assert safe_word(cat["van gogh"], None) == ""
    assert safe_word(cat["church"], "ground") == "ground"


def test_epochs_zero_edits_only_the_cross_attention_keys_and_values():
    result = erase(tiny_pipeline(), "trce", "church", seed=0, progress=False, overrides=quick(epochs=0))
    pipe = tiny_pipeline()
    assert set(result.delta) == set(Trce.stage_one_names(pipe))


# --- stage 2 -------------------------------------------------------------------------------
def test_stage_two_changes_only_self_attention_and_cross_attention_queries():
    only_one = erase(tiny_pipeline(), "trce", "church", seed=0, progress=False, overrides=quick(epochs=0))
    both = erase(tiny_pipeline(), "trce", "church", seed=0, progress=False, overrides=quick(lr=1e-3))
    pipe = tiny_pipeline()
    stage_two = set(Trce.stage_two_names(pipe))
    assert stage_two and all(".attn1." in n or ".attn2.to_q." in n for n in stage_two)
    assert not stage_two & set(Trce.stage_one_names(pipe))
    changed_in_two = {n for n in both.delta
                      if n not in only_one.delta or not torch.equal(both.delta[n], only_one.delta[n])}
    assert changed_in_two and changed_in_two <= stage_two
    assert {n for n in stage_two if n in both.delta} == changed_in_two
    # stage 2 starts from stage 1 and leaves its keys and values as stage 1 wrote them
    for n in only_one.delta:
        assert torch.equal(both.delta[n], only_one.delta[n]), n


def test_trajectory_latents_match_one_trajectory_run_alone():
    from methods.common import ddim_sample_batch, encode_prompts, training_scheduler
    pipe = tiny_pipeline()
    scheduler = training_scheduler(pipe)
    cond = encode_prompts(pipe, ["a church", "a tower", "a golf ball"])
    uncond = encode_prompts(pipe, [""])
    noise = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    wanted = {0: {0, 3}, 2: {1, 2}}
    got = trajectory_latents(pipe.unet, scheduler, noise, wanted, 5, batch=2, cond=cond, uncond=uncond,
                             guidance=3.0)
    assert set(got) == {(0, 0), (0, 3), (2, 1), (2, 2)}
    for (i, k), z in got.items():
        alone, _ = ddim_sample_batch(pipe.unet, scheduler, cond[i:i + 1], uncond, 5, [k], 3.0, noise[i:i + 1])
        assert torch.allclose(z, alone, atol=1e-5), (i, k)


def test_the_hinge_is_zero_beyond_the_margin_and_positive_inside_it():
    g = torch.Generator().manual_seed(0)
    prefer, reject = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    near_prefer = prefer + 0.01 * torch.randn(2, 4, 8, 8, generator=g)
    assert float(hinge(near_prefer, prefer, reject, beta=1.0, margin=0.01)) == 0.0
    near_reject = reject + 0.01 * torch.randn(2, 4, 8, 8, generator=g)
    value = float(hinge(near_reject, prefer, reject, beta=1.0, margin=0.01))
    distance = float((reject - prefer).pow(2).flatten(1).mean(1).mean())
    assert value == pytest.approx(distance, rel=0.05)  # about |reject - prefer|^2 + margin
    # inside the margin it is positive even when already closer to prefer
    midway = 0.5 * (prefer + reject) - 1e-3 * (reject - prefer)
    assert float(hinge(midway, prefer, reject, beta=1.0, margin=1.0)) > 0.0
    assert float(hinge(midway, prefer, reject, beta=2.0, margin=1.0)) == pytest.approx(
        2 * float(hinge(midway, prefer, reject, beta=1.0, margin=1.0)))


# --- config --------------------------------------------------------------------------------
@pytest.mark.parametrize("overrides,expect", [
    ({"lam": 0.0, "prior_scale": 0.0}, "singular"),
    ({"early_steps": 4, "ddim_steps": 4}, "early_steps"),
    ({"epochs": -1}, "epochs"),
    ({"lr": 0.0}, "lr"),
    ({"margin": -0.1}, "margin"),
    ({"uncond_samples": 0}, "uncond_samples"),
])
def test_bad_config_is_a_one_line_error(overrides, expect):
    pipe = tiny_pipeline()
    before = {n: t.detach().clone() for n, t in named_tensors(pipe).items()}
    with pytest.raises(EraselabError) as info:
        erase(pipe, "trce", "church", seed=0, progress=False, overrides=quick(**overrides))
    message = str(info.value)
    assert message.startswith("trce: ") and expect in message and "\n" not in message
    assert all(torch.equal(t.detach(), before[n]) for n, t in named_tensors(pipe).items())
