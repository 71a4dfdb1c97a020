"""Checks of the second batch of methods beyond the common battery (tests/test_methods.py): the
adapters and SPM's gate, RECE's closed form, ConceptPrune's selection, AdaVD's projection, SEOT's
suppression, SDD's EMA, and the inference tensors an edit saves beside its weights.

    python -m pytest tests/test_methods_second_batch.py -q
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.tiny import tiny_pipeline
from methods.delta import INFERENCE_PREFIX, load_edit, named_tensors
from methods.erase import erase

torch.set_num_threads(1)


def quick(name, **overrides):
    from methods import METHODS
    return {**METHODS.get(name).quick_overrides, **overrides}


def image(pipe, prompt="a photo of snoopy", steps=2):
    return pipe(prompt, num_inference_steps=steps, generator=torch.Generator().manual_seed(0),
                output_type="np").images


# --- adapters ------------------------------------------------------------------------------
@pytest.mark.parametrize("layer", [torch.nn.Linear(6, 5), torch.nn.Conv2d(4, 3, 3, padding=1)])
def test_an_adapter_merged_gives_the_same_output_as_applied(layer):
    from methods.adapters import Adapters
    root = torch.nn.Sequential(layer)
    adapters = Adapters.around(root, ["0"], rank=2, generator=torch.Generator().manual_seed(0), alpha=1.0)
    x = torch.randn(2, 6) if isinstance(layer, torch.nn.Linear) else torch.randn(2, 4, 5, 5)
    base = root(x)
    with adapters.active():
        assert torch.equal(root(x), base)  # up starts at zero: the adapted model is the base
    with torch.no_grad():
        adapters.up["0"].normal_()
    with adapters.active():
        applied = root(x)
    with torch.no_grad():
        layer.weight.add_(adapters.merged_deltas()["0"])
    assert not torch.allclose(applied, base)
    assert torch.allclose(root(x), applied, atol=1e-5)
    assert root(x).shape == base.shape


def test_a_scale_per_image_reaches_each_half_of_the_guidance_batch():
    from methods.adapters import Adapters
    layer = torch.nn.Linear(4, 4)
    root = torch.nn.Sequential(layer)
    adapters = Adapters.around(root, ["0"], rank=1, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        adapters.up["0"].fill_(1.0)
    x = torch.randn(4, 3, 4)  # 2 images, unconditional and conditional halves
    base = root(x)
    with adapters.active(torch.tensor([1.0, 0.0])):
        out = root(x)
    with adapters.active():
        full = root(x)
    for row in (0, 2):  # image 0 in both halves: adapted
        assert torch.allclose(out[row], full[row])
    for row in (1, 3):  # image 1: scale 0, the base
        assert torch.equal(out[row], base[row])


# --- SPM -----------------------------------------------------------------------------------
def test_spm_gate_is_one_for_the_concept_and_lower_elsewhere():
    from methods.spm import gate
    pipe = tiny_pipeline()
    values = gate(pipe, "snoopy", ["a photo of snoopy", "snoopy", "a photo of a church"]).tolist()
    assert values[0] == pytest.approx(1.0) and values[1] == pytest.approx(1.0)
    assert 0.0 <= values[2] < 1.0


def test_spm_saves_its_adapter_and_spm_plain_merges_the_same_one(tmp_path):
    gated = erase(tiny_pipeline(), "spm", "snoopy", seed=0, progress=False, overrides=quick("spm"))
    plain = erase(tiny_pipeline(), "spm-plain", "snoopy", seed=0, progress=False, overrides=quick("spm-plain"))
    assert not gated.delta and gated.inference_tensors and gated.record["inference_tensors"]
    assert all(n.startswith(INFERENCE_PREFIX + "0.") for n in gated.inference_tensors)
    from methods.adapters import Adapters
    prefix = INFERENCE_PREFIX + "0."
    adapters = Adapters.from_tensors(tiny_pipeline().unet, {n[len(prefix):]: t for n, t in
                                                            gated.inference_tensors.items()}, 1.0, 1)
    base = named_tensors(tiny_pipeline())
    for layer, delta in adapters.merged_deltas().items():
        name = f"unet.{layer}.weight"
        if name in plain.delta:
            assert torch.allclose(plain.delta[name] - base[name], delta, atol=1e-6), name
    # the saved file holds the adapter; a reload applies it through the gate
    out = gated.save(tmp_path / "spm")
    from safetensors.torch import load_file
    assert set(load_file(str(out / "delta.safetensors"))) == set(gated.inference_tensors)
    reloaded = load_edit(tiny_pipeline(), out)
    assert reloaded.tensors.keys() == gated.inference_tensors.keys()
    # in memory of their own (64-byte aligned), not views into the file's buffer: AVX-512 kernels
    # sum unaligned data in another order, and the reload would draw within 1e-6, not exactly
    assert all(t.data_ptr() % 64 == 0 for t in reloaded.tensors.values())
    assert np.array_equal(image(reloaded), image(gated.pipeline))


def test_spm_gated_and_plain_differ_where_the_gate_is_below_one():
    from methods.spm import gate
    prompt = "a photo of a church"
    gated = erase(tiny_pipeline(), "spm", "snoopy", seed=0, progress=False, overrides=quick("spm"))
    plain = erase(tiny_pipeline(), "spm-plain", "snoopy", seed=0, progress=False, overrides=quick("spm-plain"))
    assert float(gate(tiny_pipeline(), "snoopy", [prompt])[0]) < 1.0
    assert not np.array_equal(image(gated.pipeline, prompt), image(plain.pipeline, prompt))


def test_spm_anchors_have_the_reference_shape_and_norm():
    from methods.spm import anchor_embeddings
    ref = torch.randn(1, 7, 5)
    anchors = anchor_embeddings(ref, 3, torch.Generator().manual_seed(0))
    assert anchors.shape == (3, 7, 5)
    ratio = anchors.flatten(1).norm(dim=1) / ref.norm()
    assert ((ratio >= 0.8 - 1e-6) & (ratio <= 1.2 + 1e-6)).all()


# --- RECE ----------------------------------------------------------------------------------
def test_rece_adversarial_embedding_is_the_regularised_minimiser():
    from methods.rece import adversarial_embedding
    g = torch.Generator().manual_seed(0)
    current = [torch.randn(6, 4, generator=g) for _ in range(3)]
    original = [torch.randn(6, 4, generator=g) for _ in range(3)]
    concept = torch.randn(5, 4, generator=g)
    lam = 0.1
    E = adversarial_embedding(current, original, concept, lam).requires_grad_(True)
    objective = sum(((E @ W.T - concept @ W0.T) ** 2).sum() for W, W0 in zip(current, original))
    objective = objective + lam * (E ** 2).sum()
    (grad,) = torch.autograd.grad(objective, E)
    assert grad.abs().max() < 1e-4


def test_rece_epochs_move_the_weights_beyond_uce():
    none = erase(tiny_pipeline(), "rece", "snoopy", seed=0, progress=False, overrides={"epochs": 0})
    one = erase(tiny_pipeline(), "rece", "snoopy", seed=0, progress=False, overrides={"epochs": 1})
    assert set(none.delta) == set(one.delta) and none.delta
    assert any(not torch.equal(none.delta[n], one.delta[n]) for n in none.delta)


# --- ConceptPrune --------------------------------------------------------------------------
def test_conceptprune_zeroes_at_most_its_share_of_each_row():
    cfg = quick("conceptprune", skill_ratio=0.05)
    result = erase(tiny_pipeline(), "conceptprune", "snoopy", seed=0, progress=False, overrides=cfg)
    base = named_tensors(tiny_pipeline())
    assert result.delta and all(n.endswith("ff.net.2.weight") for n in result.delta)
    for name, edited in result.delta.items():
        zeroed = (edited == 0) & (base[name] != 0)
        assert torch.equal(edited[~zeroed], base[name][~zeroed])  # nothing else changes
        per_row = max(1, int(0.05 * edited.shape[1])) * cfg["first_steps"]
        assert int(zeroed.sum(1).max()) <= per_row


def test_conceptprune_prompt_pairs_differ_by_the_concept_only():
    from bench.catalog import load_catalog
    from methods.conceptprune import prompt_pairs
    catalog = load_catalog("miniworld")
    for name in ("church", "van gogh"):
        base, target = prompt_pairs(catalog[name], 3)
        assert len(base) == len(target) == 3
        assert all(name in t and name not in b for b, t in zip(base, target))


# --- AdaVD ---------------------------------------------------------------------------------
def test_adavd_leaves_orthogonal_values_and_the_start_token_alone():
    from methods.adavd import AdaVdConfig, project
    import dataclasses
    cfg = dataclasses.asdict(AdaVdConfig())
    target = torch.zeros(1, 3, 4)
    target[0, :, 0] = 1.0
    values = torch.zeros(1, 3, 4)
    values[0, 1, 1] = 2.0              # orthogonal to the target: kept
    values[0, 2, 0] = 3.0              # the target's own direction: taken out (and beyond, c = 2)
    values[0, 0, 0] = 5.0              # the start token: kept
    out = project(values, target, heads=1, cfg=cfg)
    assert torch.equal(out[0, 1], values[0, 1]) and torch.equal(out[0, 0], values[0, 0])
    assert out[0, 2, 0] < 0


def test_adavd_changes_concept_prompts_more_than_others():
    result = erase(tiny_pipeline(), "adavd", "snoopy", seed=0, progress=False)
    base = tiny_pipeline()
    moved = {p: float(np.abs(image(result.pipeline, p) - image(base, p)).mean())
             for p in ("a photo of snoopy", "a photo of a church")}
    assert moved["a photo of snoopy"] > moved["a photo of a church"]


# --- SEOT ----------------------------------------------------------------------------------
def test_seot_suppresses_the_main_directions_and_skips_prompts_without_the_word():
    from methods.common import token_span
    from methods.seot import suppress
    assert token_span([0, 5, 7, 8, 2], [7, 8]) == [2, 3] and token_span([0, 5, 2], [7]) == []
    emb = torch.randn(10, 6) + 3.0
    out = suppress(emb, [2], eot=4, alpha=1.0)
    assert torch.equal(out[[0, 1, 3]], emb[[0, 1, 3]])
    assert torch.linalg.matrix_norm(out[[2, 4, 5, 6, 7, 8, 9]], ord=2) < torch.linalg.matrix_norm(
        emb[[2, 4, 5, 6, 7, 8, 9]], ord=2)
    result = erase(tiny_pipeline(), "seot", "snoopy", seed=0, progress=False, overrides=quick("seot"))
    assert np.array_equal(image(result.pipeline, "a photo of a church"), image(tiny_pipeline(), "a photo of a church"))
    assert not np.array_equal(image(result.pipeline), image(tiny_pipeline()))


# --- SDD -----------------------------------------------------------------------------------
def test_sdd_keeps_the_ema_teacher():
    """With decay 0 the teacher is the student after every step; with decay near 1 it barely moves."""
    student = erase(tiny_pipeline(), "sdd", "snoopy", seed=0, progress=False, overrides=quick("sdd", ema_decay=0.0))
    slow = erase(tiny_pipeline(), "sdd", "snoopy", seed=0, progress=False, overrides=quick("sdd", ema_decay=0.99))
    base = named_tensors(tiny_pipeline())
    moved = {n: float((student.delta[n] - base[n]).detach().norm()) for n in student.delta}
    moved_slow = {n: float((slow.delta[n] - base[n]).detach().norm()) for n in slow.delta if n in moved}
    assert moved and sum(moved_slow.values()) < 0.1 * sum(moved.values())
