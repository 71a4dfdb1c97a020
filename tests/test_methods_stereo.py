"""Checks of STEREO (methods/stereo.py) beyond the common battery: the REO and STE targets, which
model each stage starts from and takes its frozen predictions from, the tokens being inverted on
the erased model, and bad configs.

    python -m pytest tests/test_methods_stereo.py -q
"""

from __future__ import annotations

import pytest
import torch

from bench.core.errors import EraselabError
from bench.tiny import tiny_pipeline
from methods.erase import erase

torch.set_num_threads(1)

# Two rounds, two tokens, a visible lr: every stage changes the tiny UNet (the inversion is
# checked for learning on the mini world, below).
TRACED = {"n_iterations": 2, "num_of_adv_concepts": 2, "iterations": 3, "ste_lr": 1e-3, "reo_lr": 1e-3,
          "ti_steps": 3, "ti_batch": 2, "gallery_images": 2, "gen_steps": 2, "ddim_steps": 3}


def state(unet) -> dict:
    return {k: v.detach().clone() for k, v in unet.state_dict().items()}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def trace(pipe, concept, overrides):
    """One erase with every stage recorded: (kind, ...) tuples in call order, and the result."""
    import methods.stereo as stereo
    from methods.stereo import Stereo

    calls = []
    erase_round, invert, robust_erase, learn_token = (Stereo.erase_round, Stereo.invert,
                                                      Stereo.robust_erase, stereo.learn_token)

    def traced_round(self, ctx, frozen, params, cond, r):
        entry = (state(frozen), state(ctx.pipe.unet))
        losses = erase_round(self, ctx, frozen, params, cond, r)
        calls.append(("round", r, *entry, state(ctx.pipe.unet)))
        return losses

    def traced_invert(self, ctx, latents, params, r):
        calls.append(("invert", r, state(ctx.pipe.unet)))
        return invert(self, ctx, latents, params, r)

    def traced_learn(ctx, objective, *args):
        token, before, after, word = learn_token(ctx, objective, *args)
        calls.append(("learn", before, after, objective.unet is ctx.pipe.unet))
        return token, before, after, word

    def traced_reo(self, ctx, frozen, params, erase_conds):
        calls.append(("reo", state(frozen), state(ctx.pipe.unet), erase_conds.clone()))
        return robust_erase(self, ctx, frozen, params, erase_conds)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Stereo, "erase_round", traced_round)
        mp.setattr(Stereo, "invert", traced_invert)
        mp.setattr(Stereo, "robust_erase", traced_reo)
        mp.setattr(stereo, "learn_token", traced_learn)
        result = erase(pipe, "stereo", concept, seed=0, progress=False, overrides=overrides)
    return calls, result


@pytest.fixture(scope="module")
def traced():
    return trace(tiny_pipeline(), "snoopy", TRACED)


def test_reo_target_is_the_compositional_guidance_of_the_frozen_predictions():
    from methods.stereo import reo_target
    e_0 = torch.full((1, 2), 1.0)
    e_a = torch.full((1, 2), 3.0)                           # D_a = 2
    e_x = torch.tensor([[2.0, 2.0], [4.0, 6.0]])            # D_x = (1, 1), (3, 5): mean (2, 3)
    # s = 2: e_0 + 1 * D_a - 3 * mean D_x
    assert torch.equal(reo_target(e_0, e_a, e_x, 2.0), torch.tensor([[1 + 2 - 6.0, 1 + 2 - 9.0]]))
    gen = torch.Generator().manual_seed(0)
    e_0, e_a, e_x = (torch.randn(n, 4, 3, 3, generator=gen) for n in (1, 1, 5))
    s = 3.5
    expected = e_0 + (s - 1) * (e_a - e_0) - (s + 1) * (e_x - e_0).mean(0, keepdim=True)
    assert torch.allclose(reo_target(e_0, e_a, e_x, s), expected, atol=1e-6)


def test_ste_target_is_negative_guidance_and_the_unconditional_at_the_default():
    from methods.stereo import StereoConfig, ste_target
    gen = torch.Generator().manual_seed(1)
    e_0, e_x = torch.randn(2, 1, 4, 3, 3, generator=gen)
    assert torch.allclose(ste_target(e_0, e_x, StereoConfig().negative_guidance), e_0, atol=1e-6)
    assert torch.allclose(ste_target(e_0, e_x, 3.0), e_0 - (e_x - e_0), atol=1e-6)


def test_each_ste_round_takes_its_frozen_predictions_from_the_round_before(traced):
    calls, _ = traced
    original = state(tiny_pipeline().unet)
    rounds = [c for c in calls if c[0] == "round"]
    assert [c[1] for c in rounds] == [0, 1]
    (_, _, frozen0, start0, end0), (_, _, frozen1, start1, end1) = rounds
    assert same(frozen0, original) and same(start0, original)
    assert not same(end0, original)                  # round 0 erased something
    assert same(frozen1, end0) and same(start1, end0)  # round 1: the erased UNet, not the original
    assert not same(end1, end0)                      # and erased further (cumulative)


def test_reo_starts_from_the_original_weights_and_erases_the_concept_and_every_token(traced):
    calls, result = traced
    original = state(tiny_pipeline().unet)
    [(_, frozen, start, erase_conds)] = [c for c in calls if c[0] == "reo"]
    assert same(frozen, original) and same(start, original)
    assert calls[-1][0] == "reo"                      # the last stage: the edit is REO's UNet
    pipe = tiny_pipeline()
    from methods.common import encode_prompts
    with torch.no_grad():
        emb_c = encode_prompts(pipe, ["snoopy"])
    assert erase_conds.shape[0] == 1 + TRACED["num_of_adv_concepts"]
    assert torch.equal(erase_conds[:1], emb_c)
    assert not torch.equal(erase_conds[1], erase_conds[2])  # two distinct tokens
    assert result.delta


def test_tokens_are_inverted_on_the_model_just_erased(traced):
    calls, _ = traced
    ends = {c[1]: c[-1] for c in calls if c[0] == "round"}
    inverts = [c for c in calls if c[0] == "invert"]
    assert [c[1] for c in inverts] == [0, 1]
    for _, r, unet_now in inverts:
        assert same(unet_now, ends[r])
    learned = [c for c in calls if c[0] == "learn"]
    assert len(learned) == 2 and all(on_pipe for *_, on_pipe in learned)


def _shipped() -> bool:
    from bench.miniworld import weights
    try:
        return "pipeline/model_index.json" in weights.read_sums()
    except EraselabError:
        return False


# The tiny pipeline's random UNet cannot denoise (loss ~1 whatever the prompt), so a token barely
# moves its loss; the shipped mini-world UNet shows the inversion learning (about 0.08 -> 0.065).
@pytest.mark.skipif(not _shipped(), reason="mini-world pipeline not trained yet")
def test_the_inversion_on_the_erased_mini_world_model_lowers_its_loss():
    from bench.pipeline_io import default_model, load_pipeline
    pipe = load_pipeline(default_model(), progress=False)
    calls, _ = trace(pipe, "church", {"n_iterations": 1, "num_of_adv_concepts": 1, "iterations": 2,
                                      "ti_steps": 20, "ti_batch": 2, "gallery_images": 2, "gen_steps": 10,
                                      "ddim_steps": 5})
    [(_, _, _, _, erased)] = [c for c in calls if c[0] == "round"]
    [(_, _, unet_now)] = [c for c in calls if c[0] == "invert"]
    [(_, before, after, on_pipe)] = [c for c in calls if c[0] == "learn"]
    assert same(unet_now, erased) and on_pipe
    assert after < 0.95 * before, (before, after)


def test_rounds_after_the_tokens_reo_uses_are_not_run(monkeypatch):
    from methods.stereo import Stereo
    seen = []
    original = Stereo.erase_round
    monkeypatch.setattr(Stereo, "erase_round",
                        lambda self, ctx, *a: seen.append(a[-1]) or original(self, ctx, *a))
    overrides = {**Stereo.quick_overrides, "n_iterations": 3, "num_of_adv_concepts": 1, "gallery_images": 3}
    erase(tiny_pipeline(), "stereo", "snoopy", seed=0, progress=False, overrides=overrides)
    assert seen == [0]


def test_stratified_sampling_uses_every_item_equally_often():
    from methods.stereo import stratified
    gen = torch.Generator().manual_seed(0)
    draws = stratified(3, 7, gen)
    assert len(draws) == 7 and all(draws.count(i) in (2, 3) for i in range(3))
    assert sorted(draws[:6]) == [0, 0, 1, 1, 2, 2]
    assert len(set(stratified(5, 4, gen))) == 4  # fewer steps than items: distinct ones


@pytest.mark.parametrize("bad,expect", [
    ({"n_iterations": 2, "num_of_adv_concepts": 3}, "num_of_adv_concepts"),
    ({"n_iterations": 2, "num_of_adv_concepts": 2, "gallery_images": 1}, "gallery_images"),
    ({"params": "no-such-subset"}, "no-such-subset"),
    ({"reo_lr": 0.0}, "reo_lr"),
    ({"compositional_guidance_scale": -1.0}, "compositional_guidance_scale"),
    ({"ti_steps": "many"}, "ti_steps"),
])
def test_a_bad_config_is_a_one_line_error_before_any_work(bad, expect, tmp_path):
    from methods import METHODS
    pipe = tiny_pipeline()
    before = state(pipe.unet)
    with pytest.raises(EraselabError) as info:
        erase(pipe, "stereo", "snoopy", seed=0, progress=False, out_dir=tmp_path / "out",
              overrides={**METHODS.get("stereo").quick_overrides, **bad})
    message = str(info.value)
    assert "\n" not in message and expect in message, message
    assert not (tmp_path / "out").exists() and same(state(pipe.unet), before)
