"""Checks beyond the common battery (tests/test_methods.py) for SAFREE, ANT, AdvAnchor, EraseDiff,
Scissorhands and Selective Amnesia: the parts of each that a wrong implementation would still
pass the battery with (a mask not applied, a share off, a Fisher file trusted blindly).

    python -m pytest tests/test_methods_forget_retain.py -q
"""

from __future__ import annotations

import pytest
import torch

from bench.core.errors import EraselabError
from bench.tiny import tiny_pipeline
from methods.delta import named_tensors
from methods.erase import erase

torch.set_num_threads(1)


def quick(name, **overrides):
    from methods import METHODS
    return {**METHODS.get(name).quick_overrides, **overrides}


def changed(before, pipe):
    after = named_tensors(pipe)
    return {n: (after[n] != before[n]) for n in before if not torch.equal(after[n], before[n])}


# --- SAFREE ----------------------------------------------------------------------------------
def test_safree_projector_is_an_orthogonal_projection():
    from methods.safree import projector
    rows = torch.randn(3, 8, generator=torch.Generator().manual_seed(0))
    P = projector(rows)
    assert torch.allclose(P @ P, P, atol=1e-5) and torch.allclose(P, P.T, atol=1e-6)
    assert torch.allclose(rows @ P, rows, atol=1e-5)           # the span is kept
    assert abs(float(torch.trace(P)) - 3) < 1e-4               # rank 3


def test_safree_negative_keywords_is_a_variant_and_freeu_is_undone_after_sampling():
    pipe = tiny_pipeline()
    with_keywords = erase(pipe, "safree", "snoopy", seed=0)
    alone = erase(tiny_pipeline(), "safree", "snoopy", seed=0, variant="none")
    spec, spec_alone = with_keywords.record["inference"][-1], alone.record["inference"][-1]
    assert spec["negative"] == "snoopy" and "negative" not in spec_alone
    guided = with_keywords.pipeline
    guided("a photo of snoopy", num_inference_steps=2, generator=torch.Generator().manual_seed(0),
           output_type="np")
    assert all(getattr(block, "b1", None) is None for block in guided.pipe.unet.up_blocks)


# --- ANT -------------------------------------------------------------------------------------
def test_ant_keeps_positive_guidance_before_the_split_and_negates_it_after():
    from methods import METHODS
    from methods.ant import AntConfig
    e_0, e_c = torch.zeros(3, 1, 1, 1), torch.ones(3, 1, 1, 1)
    out = METHODS.get("ant")().targets(e_0, e_c, [0, 3, 5], AntConfig(before_step=4, eta=2.0))
    assert out.flatten().tolist() == [2.0, 2.0, -2.0]  # steps 0 and 3 come before step 4


def test_ant_changes_at_most_the_salient_half_of_each_tensor():
    pipe = tiny_pipeline()
    before = {n: t.clone() for n, t in named_tensors(pipe).items()}
    erase(pipe, "ant", "snoopy", seed=0, overrides=quick("ant", steps=3))
    moved = changed(before, pipe)
    assert moved, "ANT changed nothing"
    # the mask keeps entries at or above each tensor's median (ties may add a few)
    shares = {n: float(m.float().mean()) for n, m in moved.items() if m.numel() >= 16}
    assert max(shares.values()) <= 0.6, sorted(shares.items(), key=lambda kv: -kv[1])[:3]
    unmasked = tiny_pipeline()
    before = {n: t.clone() for n, t in named_tensors(unmasked).items()}
    erase(unmasked, "ant", "snoopy", seed=0, overrides=quick("ant", steps=3, mask_keep="none"))
    assert max(float(m.float().mean()) for m in changed(before, unmasked).values()) > 0.9


# --- AdvAnchor -------------------------------------------------------------------------------
def test_advanchor_perturbs_the_concept_word_in_the_anchor_prompt():
    from bench.catalog import load_catalog
    from methods.advanchor import prompts_for
    from methods.common import tokenize, word_positions
    pipe = tiny_pipeline()
    catalog = load_catalog("miniworld")
    texts = prompts_for(catalog["church"])
    positions = word_positions(pipe, tokenize(pipe, [texts["anchor"]])[0].tolist(), "church")
    ids = pipe.tokenizer(texts["anchor"]).input_ids
    word = pipe.tokenizer("church").input_ids[1:-1]
    assert [ids[i] for i in positions] == word
    assert prompts_for(catalog["van gogh"])["neutral"] == "painting"


# --- Scissorhands ----------------------------------------------------------------------------
def test_scissorhands_snip_keeps_the_global_top_share():
    from methods.scissorhands import snip_mask
    params = [torch.ones(10), torch.ones(30)]
    grads = [torch.arange(10.0), torch.arange(30.0) + 100]   # the second tensor dominates
    mask = snip_mask(params, grads, 0.25)
    assert int(sum(m.sum() for m in mask)) == 10 and not mask[0].any()


def test_scissorhands_reinitialises_the_sparsity_complement_before_repair():
    pipe = tiny_pipeline()
    before = {n: t.clone() for n, t in named_tensors(pipe).items()}
    erase(pipe, "scissorhands", "snoopy", seed=0, overrides=quick("scissorhands", steps=0, sparsity=0.95))
    moved = changed(before, pipe)
    total = sum(before[n].numel() for n in before if n.startswith("unet."))
    share = sum(int(m.sum()) for m in moved.values()) / total
    assert all(n.startswith("unet.") for n in moved)
    assert 0.03 < share <= 0.05 + 1e-3, share   # at most 5% re-drawn (a few draws equal the old value)


def test_scissorhands_redraws_normalisation_scales_as_one():
    from methods.scissorhands import normalisation_scales
    pipe = tiny_pipeline()
    scales = normalisation_scales(pipe.unet)
    with torch.no_grad():   # a fresh model's scales are already one: move them so a re-draw shows
        for p in pipe.unet.parameters():
            if id(p) in scales:
                p.fill_(2.0)
    before = {n: t.clone() for n, t in named_tensors(pipe).items()}
    scale_names = {f"unet.{n}" for n, p in pipe.unet.named_parameters() if id(p) in scales}
    erase(pipe, "scissorhands", "snoopy", seed=0, overrides=quick("scissorhands", steps=0, sparsity=0.95))
    after = named_tensors(pipe)
    redrawn = [after[n][m] for n, m in changed(before, pipe).items() if n in scale_names]
    assert redrawn, "SNIP picked no normalisation scale: the check has nothing to look at"
    assert all(bool((r == 1).all()) for r in redrawn)


def test_scissorhands_released_scope_names_the_two_self_attentions():
    from methods.scissorhands import PRUNE_SCOPES
    picks = PRUNE_SCOPES["released"]
    assert picks("unet.up_blocks.1.attentions.1.transformer_blocks.0.attn1.to_q.weight")
    assert picks("unet.up_blocks.2.attentions.1.transformer_blocks.0.attn1.to_out.0.bias")
    assert not picks("unet.up_blocks.1.attentions.1.transformer_blocks.0.attn2.to_q.weight")
    assert not picks("unet.up_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight")


def test_scissorhands_prunes_only_inside_its_scope(monkeypatch):
    import methods.scissorhands as sh
    inside = "unet.up_blocks.0.attentions.1.transformer_blocks.0.attn1."
    monkeypatch.setitem(sh.PRUNE_SCOPES, "released", lambda name: name.startswith(inside))
    pipe = tiny_pipeline()
    before = {n: t.clone() for n, t in named_tensors(pipe).items()}
    erase(pipe, "scissorhands", "snoopy", seed=0,
          overrides=quick("scissorhands", steps=0, sparsity=0.9, prune_scope="released"))
    moved = changed(before, pipe)
    assert moved and all(n.startswith(inside) for n in moved), sorted(moved)


def test_scissorhands_scope_missing_from_the_model_is_a_one_line_error(monkeypatch):
    import methods.scissorhands as sh
    generated = []
    real = sh.concept_set
    monkeypatch.setattr(sh, "concept_set", lambda *a, **k: generated.append(1) or real(*a, **k))
    pipe = tiny_pipeline()   # its UNet has no up_blocks.1 / up_blocks.2 attentions
    with pytest.raises(EraselabError, match="prune_scope 'released' matches no UNet tensor"):
        erase(pipe, "scissorhands", "snoopy", seed=0, overrides=quick("scissorhands", prune_scope="released"))
    assert not generated  # the scope is checked before the slow forget set is generated


# --- Selective Amnesia -----------------------------------------------------------------------
def test_selective_amnesia_fisher_is_non_negative_and_zero_without_gradient():
    from methods.selective_amnesia import fisher_diagonal
    pipe = tiny_pipeline()
    names = [n for n in named_tensors(pipe) if n.startswith("unet.conv_in")]
    params = [pipe.unet.conv_in.weight.requires_grad_(True), pipe.unet.conv_in.bias.requires_grad_(True)]
    dead = torch.zeros(3, requires_grad=True)  # not in the graph: its Fisher stays 0
    size = pipe.unet.config.sample_size
    latents = torch.randn(2, pipe.unet.config.in_channels, size, size, generator=torch.Generator().manual_seed(0))
    out = fisher_diagonal(pipe, params + [dead], names + ["unet.dead"], latents, ["a", "b"], 2,
                          torch.Generator().manual_seed(0))
    assert all((f >= 0).all() for f in out) and float(out[0].sum()) > 0 and not out[2].any()


@pytest.mark.parametrize("content,expected", [
    (b"not a safetensors file", "not a readable safetensors file"),
    ("wrong-shape", "has shape"),
    ("missing-key", "no entry for UNet parameter"),
])
def test_selective_amnesia_rejects_a_bad_fisher_file_in_one_line(tmp_path, content, expected):
    from safetensors.torch import save_file
    pipe = tiny_pipeline()
    path = tmp_path / "fisher.safetensors"
    unet = {n: p for n, p in pipe.unet.named_parameters()}
    if content == "wrong-shape":
        save_file({n: torch.zeros(2) if i == 0 else torch.zeros_like(p)
                   for i, (n, p) in enumerate(unet.items())}, str(path))
    elif content == "missing-key":
        save_file({n: torch.zeros_like(p) for n, p in list(unet.items())[1:]}, str(path))
    else:
        path.write_bytes(content)
    before = {n: t.clone() for n, t in named_tensors(pipe).items()}
    with pytest.raises(EraselabError) as err:
        erase(pipe, "selective-amnesia", "snoopy", seed=0,
              overrides=quick("selective-amnesia", fisher=str(path)))
    assert expected in str(err.value) and "\n" not in str(err.value) and str(path) in str(err.value)
    assert not changed(before, pipe)
