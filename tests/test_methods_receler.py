"""Checks of Receler beyond the common battery (tests/test_methods.py): the erasers start as the
identity, live in the pipeline's own UNet while the edit is loaded (so attacks and fine-tuning
meet them) and leave with ``reset_edits``; the soft tokens follow the concept's tokens; the mask
and its regulariser; the saved edit reloads; bad config is one line.

    python -m pytest tests/test_methods_receler.py -q
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.core.errors import EraselabError
from bench.tiny import tiny_pipeline
from methods.delta import INFERENCE_PREFIX, load_edit, named_tensors, reset_edits
from methods.erase import erase
from methods.receler import Erasers  # noqa: F401 - diffusers' import paid at collection, not by a test

torch.set_num_threads(1)


def quick(**overrides):
    from methods.receler import Receler
    return {**Receler.quick_overrides, **overrides}


def image(pipe, prompt="a photo of snoopy", steps=2):
    return pipe(prompt, num_inference_steps=steps, generator=torch.Generator().manual_seed(0),
                output_type="np").images


def unet_call(pipe, seed=0):
    """One direct UNet call (what white-box attacks and fine-tuning run), outside any pipeline call."""
    g = torch.Generator().manual_seed(seed)
    unet = pipe.unet
    z = torch.randn(1, unet.config.in_channels, unet.config.sample_size, unet.config.sample_size, generator=g)
    cond = torch.randn(1, 77, unet.config.cross_attention_dim, generator=g)
    with torch.no_grad():
        return unet(z, 500, encoder_hidden_states=cond).sample


def test_zero_initialised_erasers_leave_the_unet_bit_identical():
    from methods.receler import Erasers, eraser_targets
    pipe = tiny_pipeline()
    base = unet_call(pipe)
    erasers = Erasers.around(pipe.unet, rank=8, generator=torch.Generator().manual_seed(0))
    assert set(erasers.weights) == set(eraser_targets(pipe.unet)) and erasers.weights
    with erasers.active():
        assert torch.equal(unet_call(pipe), base)
    with torch.no_grad():
        for w in erasers.weights.values():
            w["up.weight"].normal_()
    with erasers.active():
        assert not torch.allclose(unet_call(pipe), base)
    assert torch.equal(unet_call(pipe), base)  # hooks gone after the block


def test_trained_erasers_change_concept_prompts_and_sit_in_the_unet_until_reset():
    pipe = tiny_pipeline()
    base_image, base_unet = image(pipe), unet_call(pipe)
    base = {n: t.detach().clone() for n, t in named_tensors(pipe).items()}
    result = erase(pipe, "receler", "snoopy", seed=0, progress=False, overrides=quick(steps=3))
    assert not result.delta  # no UNet weight changes ...
    assert all(torch.equal(t.detach(), base[n]) for n, t in named_tensors(pipe).items())
    keys = [k for k in result.inference_tensors if k.startswith(INFERENCE_PREFIX)]
    assert keys and all(k.rsplit(".", 2)[-2] in ("down", "up") for k in keys)  # ... the erasers instead
    edited = result.pipeline
    assert not np.array_equal(image(edited), base_image)
    # persistent: a direct call of the pipeline's own UNet meets the erasers too
    assert not torch.allclose(unet_call(pipe), base_unet)
    reset_edits(edited)
    assert torch.equal(unet_call(pipe), base_unet)
    assert np.array_equal(image(pipe), base_image)


def test_the_soft_tokens_sit_right_after_the_concept_tokens(monkeypatch):
    import methods.receler as receler
    from attacks.placeholders import Placeholders

    seen = []

    class Recording(Placeholders):
        def _hook(self, module, inputs, output):
            out = super()._hook(module, inputs, output)
            if out is not None:
                seen.append((inputs[0].clone(), output.detach().clone(), out.detach().clone(),
                             self.vectors.detach().clone()))
            return out

    monkeypatch.setattr(receler, "Placeholders", Recording)
    pipe = tiny_pipeline()
    k = 3
    erase(pipe, "receler", "snoopy", seed=0, progress=False, overrides=quick(attack_tokens=k))
    assert seen, "the adversary never filled its soft tokens"
    n = len(pipe.tokenizer("snoopy", add_special_tokens=False).input_ids)
    for ids, plain, filled, vectors in seen:
        changed = (filled != plain).any(-1)[0].nonzero().flatten().tolist()
        assert changed == list(range(1 + n, 1 + n + k))  # right after the concept, nowhere else
        assert torch.equal(filled[0, 1 + n:1 + n + k], vectors)
        assert ids[0, 1:1 + n].tolist() == pipe.tokenizer("snoopy", add_special_tokens=False).input_ids


def test_the_soft_prompt_must_fit_the_text_encoder():
    from methods.receler import concept_positions, soft_prompt_ids
    pipe = tiny_pipeline()
    ids = soft_prompt_ids(pipe, "van gogh", 4)
    n = len(pipe.tokenizer("van gogh", add_special_tokens=False).input_ids)
    assert concept_positions(pipe, "van gogh") == list(range(1, 1 + n))
    assert ids[0, 1 + n:1 + n + 4].unique().numel() == 1 and ids[0, 1:1 + n].tolist() == \
        pipe.tokenizer("van gogh", add_special_tokens=False).input_ids
    with pytest.raises(EraselabError, match="lower attack_tokens"):
        soft_prompt_ids(pipe, "van gogh", 70)


def test_the_regulariser_is_zero_when_the_eraser_acts_inside_the_mask_only():
    from methods.receler import mask_regulariser
    g = torch.Generator().manual_seed(0)
    masks = {"a": (torch.rand(1, 16, 1, generator=g) > 0.5).float(),
             "b": (torch.rand(1, 4, 1, generator=g) > 0.3).float()}
    inside = {n: torch.randn(1, m.shape[1], 6, generator=g) * m for n, m in masks.items()}
    assert float(mask_regulariser(inside, masks)) == 0.0
    leaking = {n: o + 0.1 * (1 - masks[n]) for n, o in inside.items()}
    assert float(mask_regulariser(leaking, masks)) == pytest.approx(0.01, rel=1e-5)  # 0.1^2 per pixel


def test_the_mask_comes_from_the_nearest_level_and_is_resized_to_every_layer():
    from methods.receler import concept_masks
    hot = torch.zeros(1, 4, 4)
    hot[0, 1, 2] = 1.0  # the concept's attention sits at one place of the 4x4 level
    maps = {"fine": torch.rand(1, 64) * 0.01, "coarse": hot.flatten(1) + 0.05}
    grids = {"fine": (8, 8), "coarse": (4, 4)}
    masks = concept_masks(maps, grids, resolution=4, threshold=0.1)
    assert masks["coarse"].shape == (1, 16, 1) and masks["fine"].shape == (1, 64, 1)
    assert masks["coarse"][0, :, 0].nonzero().flatten().tolist() == [1 * 4 + 2]
    fine = masks["fine"][0, :, 0].view(8, 8)
    assert fine[2:4, 4:6].eq(1).all() and int(fine.sum()) == 4  # nearest upsampling of that cell
    # a resolution the UNet lacks falls back to its nearest level (here 4 for 3)
    assert torch.equal(concept_masks(maps, grids, 3, 0.1)["coarse"], masks["coarse"])


def test_the_saved_edit_reloads_to_the_same_images_and_unet(tmp_path):
    result = erase(tiny_pipeline(), "receler", "snoopy", seed=0, progress=False, overrides=quick())
    out = result.save(tmp_path / "edit")
    reloaded = load_edit(tiny_pipeline(), out)
    assert np.array_equal(image(result.pipeline), image(reloaded))
    assert np.array_equal(image(result.pipeline, "a photo of a dog"), image(reloaded, "a photo of a dog"))
    assert torch.equal(unet_call(result.pipeline), unet_call(reloaded))


def test_an_edit_without_its_erasers_does_not_load(tmp_path):
    from methods.delta import EditResult
    result = erase(tiny_pipeline(), "receler", "snoopy", seed=0, progress=False, overrides=quick())
    damaged = EditResult(pipeline=None, delta=result.delta, record=result.record, inference_tensors={})
    out = damaged.save(tmp_path / "damaged")
    pipe = tiny_pipeline()
    base = unet_call(pipe)
    with pytest.raises(EraselabError, match="no eraser tensors"):
        load_edit(pipe, out)
    assert torch.equal(unet_call(pipe), base)  # the base pipeline as it was, reusable
    load_edit(pipe, result.save(tmp_path / "whole"))


@pytest.mark.parametrize("overrides, words", [
    ({"mask_threshold": 1.5}, "mask_threshold"),
    ({"attack_tokens": 0}, "attack_tokens"),
    ({"rank": 0}, "rank"),
    ({"attack_tokens": 75}, "lower attack_tokens"),
])
def test_bad_config_is_one_line_and_leaves_the_pipeline(overrides, words, tmp_path):
    pipe = tiny_pipeline()
    base = unet_call(pipe)
    with pytest.raises(EraselabError) as info:
        erase(pipe, "receler", "snoopy", seed=0, progress=False, overrides=quick(**overrides),
              out_dir=tmp_path / "out")
    assert "\n" not in str(info.value) and words in str(info.value)
    assert not (tmp_path / "out").exists()
    assert torch.equal(unet_call(pipe), base)
    assert not pipe.text_encoder.get_input_embeddings()._forward_hooks  # the soft-token hook is gone


def test_white_box_attacks_and_sampling_probes_reach_receler_not_per_call_filters():
    from attacks.base import get_probe
    from methods import METHODS
    soft = get_probe("soft-prompt")()
    assert soft.not_applicable(METHODS.get("receler")) is None
    assert soft.not_applicable(METHODS.get("spm"))  # a gated adapter is outside the attack's model


def test_a_finetune_checkpoint_keeps_the_erasers(tmp_path):
    from PIL import Image

    from bench.finetune import Recipe, finetune
    rng = np.random.RandomState(0)
    pairs = [(Image.fromarray((rng.rand(16, 16, 3) * 255).astype("uint8")), f"a photo of a dog {i}")
             for i in range(2)]
    result = erase(tiny_pipeline(), "receler", "snoopy", seed=0, progress=False, overrides=quick())
    edited_unet = unet_call(result.pipeline)
    saved = {}
    finetune(result.pipeline, pairs, Recipe("unet", "lora", 1e-3, 2, (0, 1)), seed=0,
             on_checkpoint=lambda s, r: saved.__setitem__(s, r), progress=False)
    assert set(saved[1].inference_tensors) == set(result.inference_tensors)
    saved[0].save(tmp_path / "ck0")
    reset_edits(result.pipeline)
    assert torch.equal(unet_call(load_edit(tiny_pipeline(), tmp_path / "ck0")), edited_unet)


def test_sequential_erasers_stack_and_reset_removes_all():
    pipe = tiny_pipeline()
    base = unet_call(pipe)
    first = erase(pipe, "receler", "snoopy", seed=0, progress=False, overrides=quick())
    after_first = unet_call(pipe)
    second = erase(first.pipeline, "receler", "church", seed=0, progress=False, overrides=quick())
    assert len(second.record["inference"]) == 2
    assert not torch.equal(unet_call(pipe), after_first)
    reset_edits(second.pipeline)
    assert torch.equal(unet_call(pipe), base)
