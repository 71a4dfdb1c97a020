"""Checks of MACE beyond the common battery (tests/test_methods.py): its closed forms against a
direct least-squares solve, the token alignment of the refinement, the masked attention loss and
its training, the fusion, the renderer's masks, Grounded-SAM on tiny stand-in models, bad config.

    python -m pytest tests/test_methods_mace.py -q
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.core.errors import EraselabError
from bench.tiny import tiny_pipeline, tiny_tokenizer
from methods import METHODS
from methods.delta import named_tensors
from methods.erase import erase, resolve_concept, resolve_method_config

torch.set_num_threads(1)


def quick(**overrides):
    return {**METHODS.get("mace").quick_overrides, **overrides}


def context(pipe, concept="snoopy", **overrides):
    from methods.base import EditContext
    concept_obj, cat = resolve_concept(concept)
    config = resolve_method_config(METHODS.get("mace"), "mini", overrides=quick(**overrides))
    return EditContext(method="mace", pipe=pipe, concept=concept_obj, catalog=cat, config=config,
                       family="mini", seed=0, images=None, progress=False)


def lstsq_edit(W0, inputs, outputs, lam, cache=None, cache_out=None, alpha=0.0):
    """The same minimiser written as one stacked least-squares problem, solved in float64."""
    d_in = W0.shape[1]
    lhs = [lam ** 0.5 * torch.eye(d_in, dtype=torch.float64), inputs.double()]
    rhs = [lam ** 0.5 * W0.T.double(), outputs.double()]
    if cache is not None:
        lhs.append(alpha ** 0.5 * cache.double())
        rhs.append(alpha ** 0.5 * cache_out.double())
    return torch.linalg.lstsq(torch.cat(lhs), torch.cat(rhs)).solution.T


# --- closed forms ------------------------------------------------------------------------------
def test_the_refinement_and_fusion_solves_are_the_least_squares_minimisers():
    from methods.mace import fuse, refine
    g = torch.Generator().manual_seed(0)
    W0 = torch.randn(5, 6, generator=g)
    e, e_mapped = torch.randn(9, 6, generator=g), torch.randn(9, 6, generator=g)
    cache = torch.randn(6, 6, generator=g)
    W_cfr = refine(W0, e, e_mapped, lam=0.7, cache=cache, alpha=0.3)
    expected = lstsq_edit(W0, e, e_mapped @ W0.T, 0.7, cache, cache @ W0.T, 0.3)
    assert torch.allclose(W_cfr.double(), expected, atol=1e-4)
    # fusion: around W_cfr, targets (W_cfr + dW) e, the cache keeping the ORIGINAL weights' outputs
    rows, delta = torch.randn(12, 6, generator=g), torch.randn(5, 1, generator=g) @ torch.randn(1, 6, generator=g)
    fused = fuse(W_cfr, [rows], [delta], lam=0.7, cache=cache, W0=W0, alpha=0.3)
    expected = lstsq_edit(W_cfr, rows, rows @ (W_cfr + delta).T, 0.7, cache, cache @ W0.T, 0.3)
    assert torch.allclose(fused.double(), expected, atol=1e-4)


def test_fusion_of_one_concept_reproduces_the_merged_adapter_on_its_rows():
    from methods.mace import fuse
    g = torch.Generator().manual_seed(1)
    W_cfr = torch.randn(8, 6, generator=g)
    rows = torch.randn(40, 6, generator=g)  # more rows than dimensions, as 30 prompts x 77 tokens
    delta = torch.randn(8, 1, generator=g) @ torch.randn(1, 6, generator=g)
    merged = rows @ (W_cfr + delta).T
    tight = fuse(W_cfr, [rows], [delta], lam=1e-6)
    assert torch.allclose(rows @ tight.T, merged, atol=1e-4)
    loose = fuse(W_cfr, [rows], [delta], lam=1e3)  # a strong pull back towards W_cfr
    gap = lambda W: float((rows @ W.T - merged).norm())
    assert 0 < gap(tight) < gap(loose) < gap(W_cfr)
    assert torch.allclose(fuse(W_cfr, [rows], [torch.zeros_like(delta)], lam=1.0), W_cfr, atol=1e-5)


def test_a_singular_solve_is_a_one_line_error():
    from methods.mace import refine
    with pytest.raises(EraselabError, match="singular or not finite; raise lam or alpha"):
        refine(torch.ones(3, 4), torch.zeros(2, 4), torch.zeros(2, 4), lam=0.0)


# --- stage 1: which rows map where ---------------------------------------------------------------
def test_refinement_rows_are_the_context_around_the_concept_aligned_with_the_anchor_prompt():
    from methods.common import encode_prompts, tokenize
    from methods.common import word_span
    from methods.mace import aligned_positions, cfr_rows
    pipe = tiny_pipeline()
    ids = tokenize(pipe, ["a photo of snoopy"])[0].tolist()
    anchor_ids = tokenize(pipe, ["a photo of dog"])[0].tolist()
    src, dst = aligned_positions(pipe, ids, "snoopy", "dog")  # 6 letter tokens -> 3
    start = word_span(pipe, ids, "snoopy", "mace")[0]
    assert src[:start] == dst[:start] == list(range(start))          # the prefix as is
    assert src[start] == start + 6 and dst[start] == start + 3        # the suffix, shifted
    assert [ids[i] for i in src[start:]] == [anchor_ids[j] for j in dst[start:]]  # eot / padding
    assert not set(src) & set(range(start, start + 6))                # never the concept's tokens
    e, e_mapped = cfr_rows(pipe, ["a photo of snoopy"], ["a photo of dog"], "snoopy", "dog")
    hidden = encode_prompts(pipe, ["a photo of snoopy", "a photo of dog"]).float()
    assert torch.equal(e, hidden[0, src]) and torch.equal(e_mapped, hidden[1, dst])


def test_refinement_alone_maps_the_concepts_context_towards_the_anchor():
    from methods.mace import augmented_prompts, cfr_rows, refine
    pipe = tiny_pipeline()
    base = {n: t.detach().clone() for n, t in named_tensors(pipe).items()}
    result = erase(pipe, "mace", "snoopy", seed=0, progress=False,
                   overrides=quick(steps=0, lam=1.0, anchor="dog"))
    ctx = context(tiny_pipeline())
    prompts = augmented_prompts(ctx.concept, 4)
    e, e_mapped = cfr_rows(ctx.pipe, prompts, augmented_prompts(ctx.concept, 4, "dog"), "snoopy", "dog")
    assert set(result.delta) == set(METHODS.get("mace")().trainable(pipe, ctx.config))
    for name, W in result.delta.items():
        W0 = base[name]
        # steps=0: no adapter, the fusion keeps W_cfr, so the edit is the refinement's solve
        assert torch.allclose(W, refine(W0, e, e_mapped, lam=1.0), atol=1e-3), name  # float32 solves
        gap_after = float((e @ W.T - e_mapped @ W0.T).norm())
        gap_before = float((e @ W0.T - e_mapped @ W0.T).norm())
        assert gap_after < 0.75 * gap_before, (name, gap_after, gap_before)


# --- stage 2: masks and the attention loss -------------------------------------------------------
def test_the_masked_attention_loss_counts_the_concept_columns_inside_the_mask_only():
    from methods.mace import masked_attention_loss
    g = torch.Generator().manual_seed(0)
    probs = [torch.rand(2, 16, 10, generator=g), torch.rand(2, 4, 10, generator=g)]
    zero = {16: torch.zeros(16), 4: torch.zeros(4)}
    assert float(masked_attention_loss(probs, [3, 4], zero)) == 0.0
    inside = torch.zeros(16)
    inside[:5] = 1
    masks = {16: inside, 4: torch.tensor([0.0, 0.0, 1.0, 0.5])}
    expected = probs[0][:, :5][:, :, [3, 4]].norm() + (probs[1][:, :, [3, 4]] * masks[4][None, :, None]).norm()
    assert torch.allclose(masked_attention_loss(probs, [3, 4], masks), expected)
    changed = [p.clone() for p in probs]
    changed[0][:, 5:] = 7.0   # outside the mask
    changed[0][:, :, 0] = 7.0  # not a concept column
    assert torch.allclose(masked_attention_loss(changed, [3, 4], masks), expected)


def test_renderer_masks_cover_the_object_and_pool_to_every_attention_resolution():
    from bench.miniworld.render import render, stable_seed
    from methods.mace import attention_sizes, pooled_masks, rendered_images
    ctx = context(tiny_pipeline(), "church")
    images, masks = rendered_images(ctx, 3, 64)
    for i, mask in enumerate(masks):
        sample = render("church", "plain", seed=stable_seed("mace", "church", 0, i), size=64)
        assert np.array_equal(np.asarray(images[i]), sample.image)
        (_, x0, y0, x1, y1), = sample.boxes
        ys, xs = np.nonzero(mask.numpy() > 0)
        assert 0.03 < float(mask.mean()) < 0.9
        assert x0 <= xs.min() and xs.max() < x1 and y0 <= ys.min() and ys.max() < y1  # inside the box
        # the object's pixels differ from the background the mask leaves out
        img = sample.image.astype(float)
        assert np.abs(img[mask.numpy() > 0.99].mean(0) - img[mask.numpy() == 0].mean(0)).sum() > 10
    assert set(attention_sizes(16, 16).values()) == {(16, 16), (8, 8), (4, 4), (2, 2), (1, 1)}
    pooled = pooled_masks(masks, (16, 16))[0]
    assert all(abs(float(m.mean()) - float(masks[0].mean())) < 1e-5 for m in pooled.values())
    _, style_masks = rendered_images(context(tiny_pipeline(), "van gogh"), 2, 32)
    assert torch.equal(style_masks, torch.ones(2, 32, 32))  # a style: the whole image


def test_training_lowers_the_masked_attention_loss():
    from methods.common import encode_prompts, training_scheduler, unet_out, word_span
    from methods.fmn import capture_cross_attention
    from methods.mace import (augmented_prompts, masked_attention_loss, pooled_masks, train_adapter,
                              training_images)
    pipe = tiny_pipeline()
    ctx = context(pipe, "church", lr=3e-2, steps=30, images=2)
    latents, masks, prompts = training_images(ctx, ctx.config)
    assert prompts == augmented_prompts(ctx.concept, 2)
    adapters = train_adapter(ctx, ctx.config, latents, masks, prompts)
    ids = pipe.tokenizer(prompts, padding="max_length", max_length=77, return_tensors="pt").input_ids
    cond = encode_prompts(pipe, prompts)
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(5))
    t = torch.tensor([300])
    z = training_scheduler(pipe).add_noise(latents, noise, t)
    per_image = pooled_masks(masks, tuple(latents.shape[-2:]))

    def loss(scale):
        with torch.no_grad(), capture_cross_attention(pipe.unet, None) as store, adapters.active(scale):
            total = 0.0
            for i in range(2):
                store.clear()
                unet_out(pipe.unet, z[i:i + 1], t, cond[i:i + 1])
                total += float(masked_attention_loss(store, word_span(pipe, ids[i].tolist(), "church", "mace"), per_image[i]))
        return total

    before, after = loss(0.0), loss(1.0)
    assert after < 0.8 * before, (before, after)


def test_importance_sampling_puts_the_mass_between_200_and_400():
    from methods.mace import importance_weights
    w = importance_weights(1000)
    p = w / w.sum()
    assert float(p[150:450].sum()) > 0.9 and int(p.argmax()) in range(290, 311)
    assert torch.allclose(importance_weights(500), w[::2])  # the same density on any scale


# --- Grounded-SAM on tiny stand-ins --------------------------------------------------------------
def tiny_grounded_sam(folder):
    """A tiny OWL-ViT detector and a tiny SAM, random weights, saved as local model folders."""
    from transformers import (OwlViTConfig, OwlViTForObjectDetection, OwlViTImageProcessor,
                              OwlViTProcessor, SamConfig, SamImageProcessor, SamModel, SamProcessor)
    tok = tiny_tokenizer()
    tok.model_max_length = 16
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        text = dict(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                    num_attention_heads=2, max_position_embeddings=16, bos_token_id=tok.bos_token_id,
                    eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
        vision = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                      image_size=32, patch_size=8)
        detector = OwlViTForObjectDetection(OwlViTConfig(text_config=text, vision_config=vision, projection_dim=16))
        segmenter = SamModel(SamConfig(
            vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                               image_size=64, patch_size=8, output_channels=16, window_size=4,
                               global_attn_indexes=[0], mlp_dim=32, num_pos_feats=8),
            prompt_encoder_config=dict(hidden_size=16, image_size=64, patch_size=8, mask_input_channels=4),
            mask_decoder_config=dict(hidden_size=16, mlp_dim=32, num_hidden_layers=1, num_attention_heads=2,
                                     iou_head_hidden_dim=16)))
    size = {"height": 32, "width": 32}
    detector.save_pretrained(folder / "detector")
    OwlViTProcessor(image_processor=OwlViTImageProcessor(size=size, crop_size=size), tokenizer=tok) \
        .save_pretrained(folder / "detector")
    segmenter.save_pretrained(folder / "segmenter")
    SamProcessor(image_processor=SamImageProcessor(
        size={"longest_edge": 64}, pad_size={"height": 64, "width": 64}, mask_size={"longest_edge": 16},
        mask_pad_size={"height": 16, "width": 16})).save_pretrained(folder / "segmenter")
    return str(folder / "detector"), str(folder / "segmenter")


def test_grounded_sam_loads_by_path_and_masks_the_generated_images(tmp_path):
    from PIL import Image
    from methods.grounded_masks import GroundedSegmenter
    detector, segmenter = tiny_grounded_sam(tmp_path)
    tool = GroundedSegmenter.load(detector, segmenter, box_threshold=0.0)
    images = [Image.fromarray((np.random.RandomState(i).rand(20, 24, 3) * 255).astype("uint8")) for i in range(2)]
    masks = tool.masks(images, "church")
    assert [m.shape for m in masks] == [(20, 24)] * 2
    assert all(set(np.unique(m)) <= {0.0, 1.0} for m in masks) and any(m.any() for m in masks)
    none = GroundedSegmenter.load(detector, segmenter, box_threshold=1.0).masks(images[:1], "church")
    assert not none[0].any()  # nothing found: an empty mask

    pipe = tiny_pipeline()
    result = erase(pipe, "mace", "church", seed=0, progress=False,
                   overrides=quick(masks="grounded-sam", detector=detector, segmenter=segmenter,
                                   box_threshold=0.0, gen_steps=2))
    assert result.delta and result.record["edits"][-1]["config"]["masks"] == "grounded-sam"
    with pytest.raises(EraselabError, match="detector found no 'church'") as info:
        erase(tiny_pipeline(), "mace", "church", seed=0, progress=False,
              overrides=quick(masks="grounded-sam", detector=detector, segmenter=segmenter,
                              box_threshold=1.0, gen_steps=2))
    assert "\n" not in str(info.value)


# --- bad input ---------------------------------------------------------------------------------
@pytest.mark.parametrize("overrides,message", [
    ({"masks": "sam"}, "masks must be one of grounded-sam, whole, renderer"),
    ({"lam": 0.0, "alpha": 0.0}, "lam or alpha must be positive"),
    ({"lam": -1.0}, "lam, alpha and beta must be at least 0"),
    ({"box_threshold": 2.0}, "box_threshold and text_threshold must be in [0, 1]"),
    ({"prior_prompts": "/no/such/prompts.txt"}, "prior_prompts: no such file"),
    ({"masks": "grounded-sam", "detector": "/no/such/detector"}, "mace: cannot load the detector"),
])
def test_bad_config_is_a_one_line_error_that_leaves_the_pipeline(overrides, message, tmp_path):
    pipe = tiny_pipeline()
    before = {n: t.detach().clone() for n, t in named_tensors(pipe).items()}
    with pytest.raises(EraselabError) as info:
        erase(pipe, "mace", "church", seed=0, progress=False, out_dir=tmp_path / "out",
              overrides=quick(**overrides))
    assert message in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()
    assert all(torch.equal(t.detach(), before[n]) for n, t in named_tensors(pipe).items())


def test_renderer_masks_need_a_rendered_concept():
    with pytest.raises(EraselabError, match="masks 'renderer' draws mini-world concepts"):
        erase(tiny_pipeline(), "mace", "church", catalog="paper", seed=0, progress=False, overrides=quick())


def test_the_cache_rows_stand_in_for_the_catalog_prompts():
    from methods.mace import cache_rows, catalog_prompts, gram
    ctx = context(tiny_pipeline(), "church", alpha=1e-3, beta=2.0)
    prior = catalog_prompts(ctx.concept, ctx.catalog, same_type=False)
    domain = catalog_prompts(ctx.concept, ctx.catalog, same_type=True)
    assert not any("church" in p for p in prior) and set(domain) < set(prior)
    assert any("van gogh" in p for p in prior) and not any("van gogh" in p for p in domain)
    R = cache_rows(ctx, ctx.config).double()
    C = gram(ctx.pipe, prior) + 2.0 * gram(ctx.pipe, domain)
    assert torch.allclose(R.T @ R, C, rtol=1e-4, atol=1e-3 * float(C.abs().max()))
