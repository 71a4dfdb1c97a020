"""Method-specific checks: fewshot-te's objective and variants, UCE's closed form, NaN handling,
configs and family defaults, sequential erasure, few-shot image loading and ``eraselab erase``.

    python -m pytest tests/test_methods_units.py -q
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.core.errors import EraselabError
from bench.tiny import tiny_pipeline
from methods.delta import load_edit, named_tensors, reset_edits
from methods.erase import erase
from tests.test_methods import write_images

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def images_dir(tmp_path_factory):
    return write_images(tmp_path_factory.mktemp("fewshot-units"))


def _batch(pipe, seed=0):
    from methods.common import tokenize
    g = torch.Generator().manual_seed(seed)
    latents = torch.randn(2, 4, 8, 8, generator=g)
    ids = tokenize(pipe, ["a photo of a snoopy", "a rendering of a snoopy"])
    return latents, ids


# --- fewshot-te ----------------------------------------------------------------------------
def test_fewshot_objective_is_negated_textual_inversion_loss():
    from methods.common import denoising_loss, encode_ids, noise_latents, training_scheduler
    from methods.fewshot_te import fewshot_objective
    from methods.subsets import select

    pipe = tiny_pipeline()
    scheduler = training_scheduler(pipe)
    latents, ids = _batch(pipe)
    names = [n.split(".", 1)[1] for n in select(pipe, "te-mlp+te-final-attn", "text_encoder")]
    params = dict(pipe.text_encoder.named_parameters())
    chosen = [params[n] for n in names]

    def ti_loss():
        noisy, target, t = noise_latents(scheduler, latents, torch.Generator().manual_seed(7))
        return denoising_loss(pipe.unet, noisy, t, encode_ids(pipe.text_encoder, ids), target)

    ours = fewshot_objective(pipe.unet, pipe.text_encoder, scheduler, latents, ids,
                             torch.Generator().manual_seed(7))
    ti = ti_loss()
    assert torch.allclose(ours, -ti)
    g_ours = torch.autograd.grad(ours, chosen)
    g_ti = torch.autograd.grad(ti_loss(), chosen)
    for a, b in zip(g_ours, g_ti):
        assert torch.allclose(a, -b, atol=1e-7, rtol=1e-5)
        assert a.abs().sum() > 0
    # one SGD step on the method's objective increases the plain denoising loss (same batch)
    before = ti_loss().item()
    with torch.no_grad():
        for p, g in zip(chosen, g_ours):
            p -= 1e-2 * g
    assert ti_loss().item() > before


@pytest.mark.parametrize("variant,expect", [
    ("te-all", lambda n: True),
    ("te-mlp", lambda n: ".mlp.fc" in n),
    ("te-attn", lambda n: ".self_attn." in n),
    ("te-mlp+te-attn", lambda n: ".mlp.fc" in n or ".self_attn." in n),
    ("te-mlp+te-final-attn", lambda n: ".mlp.fc" in n or ".layers.2.self_attn." in n),
    ("te-layer0+te-layer2", lambda n: ".layers.0." in n or ".layers.2." in n),
    ("te-layer1-mlp", lambda n: ".layers.1.mlp.fc" in n),
    ("te-embeddings", lambda n: "embeddings." in n),
    # the names from before methods/subsets.py select the same parameters
    ("all", lambda n: True),
    ("mlp", lambda n: ".mlp.fc" in n),
    ("attn", lambda n: ".self_attn." in n),
    ("mlp+attn", lambda n: ".mlp.fc" in n or ".self_attn." in n),
    ("mlp+final-attn", lambda n: ".mlp.fc" in n or ".layers.2.self_attn." in n),
    ("layers=[0,2]", lambda n: ".layers.0." in n or ".layers.2." in n),
    ("mlp:layers=[1]", lambda n: ".layers.1.mlp.fc" in n),
])
def test_fewshot_variant_trains_exactly_the_named_parameters(variant, expect, images_dir):
    pipe = tiny_pipeline()
    base = {n: t.detach().clone() for n, t in named_tensors(pipe).items()}
    result = erase(pipe, "fewshot-te", "snoopy", variant=variant, images_dir=images_dir, seed=0,
                   overrides={"steps": 1, "lr": 1e-3}, progress=False)
    expected = {n for n in base if n.startswith("text_encoder.") and expect(n[len("text_encoder."):])}
    assert set(result.delta) == expected
    assert result.record["variant"] == variant
    assert all(torch.equal(t, base[n]) for n, t in named_tensors(pipe).items() if n not in expected)


@pytest.mark.parametrize("method, variant", [(m, v) for m in ("esd-x", "ga", "ca", "fmn")
                                             for v in ("xattn", "xattn-kv", "non-xattn", "full")])
def test_unet_variant_trains_only_the_named_parameters(method, variant, images_dir):
    """The UNet counterparts of the ablation: each method, on each shared subset, changes only
    the tensors the subset names, and some of them."""
    from methods import METHODS
    from methods.subsets import select
    pipe = tiny_pipeline()
    base = {n: t.detach().clone() for n, t in named_tensors(pipe).items()}
    quick = dict(METHODS.get(method).quick_overrides)
    kwargs = {"images_dir": images_dir} if METHODS.get(method).needs_images else {}
    result = erase(pipe, method, "snoopy", variant=variant, seed=0, progress=False,
                   overrides={**quick, "lr": 1e-3}, **kwargs)
    named = set(select(tiny_pipeline(), variant, "unet"))
    assert result.delta and set(result.delta) <= named
    assert result.record["variant"] == variant
    assert all(torch.equal(t, base[n]) for n, t in named_tensors(pipe).items() if n not in named)


@pytest.mark.parametrize("bad", ["mlps", "layers=[9]", "layers=x", "mlp:attn", "te-layer9",
                                 "te-mlp+attn", "xattn", ""])
def test_fewshot_bad_variant_is_one_line_error(bad, images_dir):
    with pytest.raises(EraselabError):
        erase(tiny_pipeline(), "fewshot-te", "snoopy", variant=bad, images_dir=images_dir, seed=0,
              overrides={"steps": 1}, progress=False)


def test_v_prediction_uses_velocity_target(images_dir):
    from methods.common import noise_latents, training_scheduler
    pipe = tiny_pipeline(prediction_type="v_prediction")
    scheduler = training_scheduler(pipe)
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    noisy, target, t = noise_latents(scheduler, latents, torch.Generator().manual_seed(1))
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(target, scheduler.get_velocity(latents, noise, t))
    result = erase(pipe, "fewshot-te", "snoopy", images_dir=images_dir, seed=0,
                   overrides={"steps": 1}, progress=False)
    assert result.delta


def test_checkpoint_every_epoch_gives_loadable_edits(images_dir, tmp_path):
    seen = []
    pipe = tiny_pipeline()
    final = erase(pipe, "fewshot-te", "snoopy", images_dir=images_dir, seed=0, progress=False,
                  overrides={"steps": 4, "checkpoint_every_epoch": True},  # 4 images / batch 2: 2 epochs
                  on_checkpoint=lambda tag, result: seen.append((tag, result)))
    assert [tag for tag, _ in seen] == ["epoch-1", "epoch-2"]
    last = seen[-1][1]  # the last epoch is the finished edit
    assert last.delta.keys() == final.delta.keys()
    assert all(torch.equal(last.delta[n], final.delta[n]) for n in final.delta)
    assert last.record["checkpoint"] == "epoch-2" and last.record["params_changed"] == final.params_changed
    first = seen[0][1]
    assert not all(torch.equal(first.delta[n], final.delta[n]) for n in final.delta)
    first.save(tmp_path / "epoch-1")
    base = reset_edits(final.pipeline)
    loaded = load_edit(base, tmp_path / "epoch-1")  # the base hash of a checkpoint matches
    tensors = named_tensors(loaded)
    assert all(torch.equal(tensors[n], t) for n, t in first.delta.items())


# --- failures ------------------------------------------------------------------------------
def test_divergence_stops_with_the_step(images_dir, tmp_path):
    pipe = tiny_pipeline()
    base = {n: t.detach().clone() for n, t in named_tensors(pipe).items()}
    with pytest.raises(EraselabError, match=r"step \d+/6"):
        erase(pipe, "fewshot-te", "snoopy", images_dir=images_dir, seed=0, progress=False,
              overrides={"steps": 6, "lr": 1e30}, out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert all(torch.equal(t, base[n]) for n, t in named_tensors(pipe).items())


def test_nan_loss_names_the_step(images_dir, monkeypatch):
    import methods.fewshot_te as fs
    calls = []

    def nan_on_third(*args, **kwargs):
        calls.append(1)
        return torch.tensor(float("nan") if len(calls) == 3 else 1.0, requires_grad=True)

    monkeypatch.setattr(fs, "fewshot_objective", nan_on_third)
    with pytest.raises(EraselabError, match=r"loss became nan at step 3/5"):
        erase(tiny_pipeline(), "fewshot-te", "snoopy", images_dir=images_dir, seed=0,
              progress=False, overrides={"steps": 5})


# --- uce -----------------------------------------------------------------------------------
def test_uce_closed_form_satisfies_normal_equations():
    from methods.uce import uce_closed_form
    g = torch.Generator().manual_seed(0)
    W0 = torch.randn(6, 5, generator=g, dtype=torch.float64)
    C_e, G, C_p = (torch.randn(n, 5, generator=g, dtype=torch.float64) for n in (2, 2, 3))
    lam, s_e, s_p = 0.5, 1.3, 0.7
    W = uce_closed_form(W0, C_e, G, C_p, lam, s_e, s_p).double()
    A = lam * torch.eye(5, dtype=torch.float64) + s_e * C_e.T @ C_e + s_p * C_p.T @ C_p
    B = lam * W0 + s_e * W0 @ G.T @ C_e + s_p * W0 @ C_p.T @ C_p
    assert torch.allclose(W @ A, B, atol=1e-4)
    # and it is the minimiser: the objective's gradient vanishes at W
    Wv = W.clone().requires_grad_(True)
    obj = lam * ((Wv - W0) ** 2).sum() + s_e * ((Wv @ C_e.T - W0 @ G.T) ** 2).sum() \
        + s_p * ((Wv @ C_p.T - W0 @ C_p.T) ** 2).sum()
    (grad,) = torch.autograd.grad(obj, Wv)
    assert grad.abs().max() < 1e-4


def test_uce_maps_concept_to_guide():
    from methods.uce import prompt_vectors
    pipe = tiny_pipeline()
    erase(pipe, "uce", "snoopy", seed=0, progress=False,
          overrides={"erase_scale": 1e4, "preserve": "[]"})
    c, guide = prompt_vectors(pipe, ["snoopy", ""], "last-token")
    base = tiny_pipeline()
    c0, g0 = prompt_vectors(base, ["snoopy", ""], "last-token")
    for name, m in pipe.unet.named_modules():
        if name.endswith("attn2.to_k"):
            W0 = dict(base.unet.named_modules())[name].weight
            assert torch.allclose(m.weight @ c0[0], W0 @ g0[0], atol=1e-2)


# --- configs, families ---------------------------------------------------------------------
def test_config_errors_and_family_defaults(images_dir):
    from methods import METHODS
    from methods.erase import resolve_method_config
    from methods.defaults import detect_family
    cls = METHODS.get("fewshot-te")
    assert detect_family(tiny_pipeline()) == "mini"
    mini = resolve_method_config(cls, "mini")
    sd = resolve_method_config(cls, "sd")
    assert (mini.lr, mini.steps) == (1.2e-4, 40) and (sd.lr, sd.steps, sd.batch_size) == (1e-5, 8, 2)
    assert resolve_method_config(cls, "mini", overrides={"lr": "3e-4", "steps": "5"}).lr == 3e-4
    for bad in ({"lr": "abc"}, {"steps": "1.5"}, {"steps": True}, {"lrr": 1}, {"hflip_p": "2"}):
        with pytest.raises(EraselabError) as info:
            resolve_method_config(cls, "mini", overrides=bad)
        assert "\n" not in str(info.value)
    with pytest.raises(EraselabError, match="unknown variant"):
        resolve_method_config(METHODS.get("sld"), "mini", variant="extreme")
    with pytest.raises(EraselabError, match="takes no --variant"):
        resolve_method_config(METHODS.get("uce"), "mini", variant="x")
    with pytest.raises(EraselabError, match="did you mean"):
        erase(tiny_pipeline(), "fewshot-tee", "snoopy", seed=0)


def test_sd_family_detected_from_hidden_size():
    from types import SimpleNamespace
    from methods.defaults import detect_family
    fake = SimpleNamespace(config={}, text_encoder=SimpleNamespace(config=SimpleNamespace(hidden_size=768)))
    assert detect_family(fake) == "sd"


# --- sequential erasure, reload checks -----------------------------------------------------
def test_sequential_erase_accumulates_against_base(images_dir, tmp_path):
    pipe = tiny_pipeline()
    first = erase(pipe, "uce", "snoopy", seed=0, progress=False)
    second = erase(first.pipeline, "negative-prompt", "church", seed=0, progress=False)
    third = erase(second.pipeline, "fewshot-te", "church", images_dir=images_dir, seed=0,
                  progress=False, overrides={"steps": 1})
    assert set(first.delta) < set(third.delta)
    assert [e["method"] for e in third.record["edits"]] == ["uce", "negative-prompt", "fewshot-te"]
    out = third.save(tmp_path / "seq")
    loaded = load_edit(tiny_pipeline(), out)
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    a = third.pipeline("a church", num_inference_steps=2, generator=gen(), output_type="np").images
    b = loaded("a church", num_inference_steps=2, generator=gen(), output_type="np").images
    assert np.array_equal(a, b)
    plain = reset_edits(third.pipeline)
    base = named_tensors(tiny_pipeline())
    assert all(torch.equal(t, base[n]) for n, t in named_tensors(plain).items())


def test_load_edit_rejects_another_base(tmp_path):
    result = erase(tiny_pipeline(), "uce", "snoopy", seed=0, progress=False)
    out = result.save(tmp_path / "e")
    with pytest.raises(EraselabError, match="hash mismatch"):
        load_edit(tiny_pipeline(seed=1), out)
    with pytest.raises(EraselabError, match="not empty"):
        result.save(out)


def test_salun_mask_keeps_top_fraction():
    from methods.salun import saliency_mask
    grads = [torch.arange(10.0), -torch.arange(10.0, 20.0)]
    masks = saliency_mask(grads, 0.5)
    assert int(sum(m.sum() for m in masks)) == 10 and masks[1].all()


def test_word_positions_exclude_special_tokens_and_a_missing_word_is_one_line():
    from methods.common import tokenize, word_span
    pipe = tiny_pipeline()
    ids = tokenize(pipe, ["a photo of snoopy"])[0]
    pos = word_span(pipe, ids.tolist(), "snoopy", "fmn")
    tok = pipe.tokenizer
    assert len(pos) == len(tok("snoopy", add_special_tokens=False).input_ids)
    assert all(int(ids[p]) not in (tok.bos_token_id, tok.eos_token_id) for p in pos)
    with pytest.raises(EraselabError, match=r"^fmn: 'church' is not a token span of its prompt"):
        word_span(pipe, ids.tolist(), "church", "fmn")


# --- few-shot images -----------------------------------------------------------------------
def test_fewshot_images_from_folder(tmp_path):
    from bench.catalog import load_catalog
    from bench.fewshot import load_fewshot_images
    folder = write_images(tmp_path / "imgs", n=6)
    concept = load_catalog("miniworld")["snoopy"]
    a = load_fewshot_images(concept, 4, seed=3, images_dir=folder)
    b = load_fewshot_images(concept, 4, seed=3, images_dir=folder)
    assert len(a) == 4 and all(x.mode == "RGB" for x in a)
    assert [np.asarray(x).tobytes() for x in a] == [np.asarray(x).tobytes() for x in b]
    with pytest.raises(EraselabError, match="not found"):
        load_fewshot_images(concept, 4, seed=0, images_dir=tmp_path / "missing")


def test_fewshot_images_from_the_renderer():
    from bench.catalog import load_catalog
    from bench.fewshot import load_fewshot_images
    catalog = load_catalog("miniworld")
    for name in ("snoopy", "van gogh"):
        images = load_fewshot_images(catalog[name], 2, seed=0)
        assert len(images) == 2 and images[0].size == (64, 64)
        again = load_fewshot_images(catalog[name], 2, seed=0)
        assert np.array_equal(np.asarray(images[1]), np.asarray(again[1]))


# --- CLI -----------------------------------------------------------------------------------
def test_an_inference_time_edit_refuses_to_export_as_a_plain_pipeline(tmp_path, capsys):
    # its weights are the unerased model: a saved diffusers pipeline would draw the concept
    from bench.cli import main
    model = tmp_path / "model"
    tiny_pipeline().save_pretrained(model)
    capsys.readouterr()
    code = main(["erase", "--model", str(model), "--method", "negative-prompt", "--concept", "snoopy", "--seed", "0",
                 "--out", str(tmp_path / "out"), "--no-progress", "--device", "cpu",
                 "--export-pipeline", str(tmp_path / "full")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and "inference-time edit changes sampling" in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "full").exists()
    edited = erase(tiny_pipeline(), "negative-prompt", "snoopy", seed=0, progress=False)
    with pytest.raises(EraselabError, match="negative-prompt: an inference-time edit"):
        edited.pipeline.save_pretrained(tmp_path / "api")
    assert not (tmp_path / "api").exists()


def test_cli_erase_json(tmp_path, images_dir, capsys):
    from bench.cli import main
    model = tmp_path / "model"
    tiny_pipeline().save_pretrained(model)
    code = main(["erase", "--model", str(model), "--method", "fewshot-te", "--concept", "snoopy",
                 "--images", str(images_dir), "--set", "steps=1", "--seed", "0",
                 "--out", str(tmp_path / "out"), "--json", "--no-progress", "--device", "cpu",
                 "--export-pipeline", str(tmp_path / "full")])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["params_changed"] > 0 and summary["delta"] == str(tmp_path / "out")
    assert (tmp_path / "out" / "delta.safetensors").is_file()
    assert (tmp_path / "full" / "model_index.json").is_file()
    code = main(["erase", "--model", str(model), "--method", "fewshot-te", "--concept", "snoopy",
                 "--images", str(images_dir), "--set", "steps=4", "--set", "checkpoint_every_epoch=true",
                 "--seed", "0", "--out", str(tmp_path / "epochs"), "--json", "--no-progress", "--device", "cpu"])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and [Path(c).name for c in summary["checkpoints"]] == ["snoopy-epoch-1", "snoopy-epoch-2"]
    assert all((Path(c) / "edit.json").is_file() and (Path(c) / "delta.safetensors").is_file()
               for c in summary["checkpoints"])
    code = main(["erase", "--model", str(model), "--method", "fewshot-te", "--concept", "snoopy",
                 "--images", str(images_dir), "--set", "lr=abc", "--seed", "0",
                 "--out", str(tmp_path / "out2"), "--no-progress", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 1 and "key 'lr'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out2").exists()


def test_cli_without_model_needs_the_mini_world(tmp_path, capsys):
    from bench.cli import main
    from bench.core.paths import MINIWORLD_DIR
    if (MINIWORLD_DIR / "pipeline").is_dir():
        pytest.skip("the mini world is installed")
    code = main(["erase", "--method", "uce", "--concept", "snoopy", "--seed", "0",
                 "--out", str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1 and "mini-world" in err


def test_generating_inside_a_method_keeps_the_callers_progress_setting():
    """A pipeline loaded quiet (load_pipeline(progress=False)) stays quiet after CA/GA/SalUn
    generate their anchor or retain images; one with bars keeps them."""
    from methods.common import generate_latents
    pipe = tiny_pipeline()
    for setting in ({"disable": True}, {}):
        pipe.set_progress_bar_config(**setting)
        generate_latents(pipe, ["a photo of a snoopy"], 2, 1.0, torch.Generator().manual_seed(0))
        assert pipe._progress_bar_config == setting


# --- ESD: the frozen model's part batched ahead ---------------------------------------------
def test_batched_zt_matches_one_trajectory_at_a_time():
    from methods.common import ddim_sample_batch, encode_prompts, training_scheduler
    pipe = tiny_pipeline(seed=0)
    cond, uncond = encode_prompts(pipe, ["snoopy"]), encode_prompts(pipe, [""])
    stops = [3, 0, 5, 1, 5]
    noise = torch.randn(len(stops), 4, 8, 8, generator=torch.Generator().manual_seed(1))
    scheduler = training_scheduler(pipe)
    z, t = ddim_sample_batch(pipe.unet, scheduler, cond, uncond, 6, stops, 3.0, noise)
    for i, k in enumerate(stops):
        z1, t1 = ddim_sample_batch(pipe.unet, scheduler, cond, uncond, 6, [k], 3.0, noise[i:i + 1])
        assert int(t[i]) == int(t1[0]) == int(scheduler.timesteps[min(k, 5)])
        # batched kernels round differently from one-row ones (and with the machine's threading):
        # the same trajectory to float32 rounding accumulated over the steps, relative to |z| ~ 20
        assert torch.allclose(z[i:i + 1], z1, rtol=1e-4, atol=1e-4), f"trajectory {i} (stop {k})"
    assert torch.equal(z[1], noise[1] * scheduler.init_noise_sigma)  # 0 steps: the start noise


def _esd_change(sample_batch, scheduler=None, seed=0):
    """ESD-x's weight change on the tiny pipeline (edited minus base weights)."""
    pipe = tiny_pipeline(seed=0)
    base = {k: v.clone() for k, v in named_tensors(pipe).items()}
    if scheduler:
        from bench.samplers import set_scheduler
        set_scheduler(pipe, scheduler)
    result = erase(pipe, "esd-x", "snoopy", overrides={"steps": 6, "ddim_steps": 4, "lr": 1e-3,
                                                        "sample_batch": sample_batch},
                   seed=seed, progress=False)
    return {k: (v - base[k]).detach() for k, v in result.delta.items()}


def _largest_gap(a, b):
    assert a.keys() == b.keys() and a
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def test_esd_batched_ahead_makes_the_step_by_step_edit():
    # sample_batch 1 is the one-step-at-a-time loop; 4 draws the same k and noise per step, so
    # the two differ by batched rounding only, far below what other draws (another seed) change
    one, ahead, other_draws = _esd_change(1), _esd_change(4), _esd_change(4, seed=1)
    size = max(float(v.abs().max()) for v in one.values())
    assert size > 1e-3
    assert _largest_gap(one, ahead) < 0.01 * size
    assert _largest_gap(one, other_draws) > 0.5 * size


def test_an_edit_does_not_depend_on_the_scheduler_a_suite_samples_with():
    default, dpm = _esd_change(4), _esd_change(4, scheduler="dpm")
    assert _largest_gap(default, dpm) == 0.0


# --- where the change went ------------------------------------------------------------------
def test_group_names_follow_the_modules():
    from methods.change_map import group_of
    assert group_of("unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight") == \
        ("unet", "down_blocks.1", "cross-attention")
    assert group_of("unet.mid_block.attentions.0.transformer_blocks.0.attn1.to_q.weight") == \
        ("unet", "mid_block", "self-attention")
    assert group_of("unet.up_blocks.2.resnets.1.conv1.weight") == ("unet", "up_blocks.2", "resnet")
    assert group_of("text_encoder.text_model.encoder.layers.3.mlp.fc1.weight") == \
        ("text_encoder", "layer3", "mlp")
    assert group_of("text_encoder.text_model.encoder.layers.0.self_attn.q_proj.bias") == \
        ("text_encoder", "layer0", "attention")
    assert group_of("text_encoder.text_model.embeddings.token_embedding.weight") == \
        ("text_encoder", "embeddings", "other")


def test_change_by_group_is_the_relative_frobenius_change():
    from methods.change_map import change_by_group
    a, b = "unet.mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight", \
        "unet.mid_block.attentions.0.transformer_blocks.0.attn2.to_v.weight"
    c = "text_encoder.text_model.encoder.layers.1.mlp.fc2.weight"
    base = {a: torch.full((2, 2), 1.0), b: torch.full((2, 2), 1.0), c: torch.full((3,), 2.0)}
    new = {a: torch.tensor([[1.0, 1.0], [1.0, 3.0]]), b: base[b].clone(), c: torch.full((3,), 2.2)}
    rows = {(r["block"], r["kind"]): r for r in change_by_group(new, base)}
    xattn = rows[("mid_block", "cross-attention")]
    assert xattn["tensors"] == 2 and xattn["params"] == 8 and xattn["params_changed"] == 1
    assert xattn["relative_change"] == pytest.approx(2.0 / 8 ** 0.5)       # ||(0,0,0,2)|| / ||ones(8)||
    assert rows[("layer1", "mlp")]["relative_change"] == pytest.approx(0.1)
    assert [r["kind"] for r in change_by_group(new, base)] == ["cross-attention", "mlp"]


@pytest.mark.parametrize("method,component,kinds", [
    ("esd-x", "unet", {"cross-attention"}),
    ("fewshot-te", "text_encoder", {"mlp", "attention"}),
])
def test_an_edit_records_where_its_change_went(method, component, kinds, images_dir):
    images = {"images_dir": images_dir} if method == "fewshot-te" else {}
    result = erase(tiny_pipeline(seed=0), method, "snoopy", progress=False,
                   overrides={"steps": 2, "lr": 1e-3}, **images)
    rows = result.record["change_by_group"]
    assert rows and {r["component"] for r in rows} == {component}
    assert {r["kind"] for r in rows} <= kinds and all(r["relative_change"] > 0 for r in rows)
    assert sum(r["params_changed"] for r in rows) == result.record["params_changed"]


# --- transfer: an erased text encoder plugged into another model --------------------------
def _sharing_text_encoder(seed: int):
    """A tiny pipeline with its own UNet (``seed``) and the text encoder of ``tiny_pipeline()``."""
    pipe = tiny_pipeline(seed=seed)
    pipe.text_encoder.load_state_dict(tiny_pipeline().text_encoder.state_dict())
    return pipe


def test_a_text_encoder_edit_transfers_to_a_model_that_shares_the_encoder(images_dir, tmp_path):
    result = erase(tiny_pipeline(), "fewshot-te", "snoopy", images_dir=images_dir, seed=0,
                   progress=False, overrides={"steps": 1})
    out = result.save(tmp_path / "fs")
    other = _sharing_text_encoder(seed=1)
    with pytest.raises(EraselabError, match="hash mismatch"):  # a plain load checks the whole base
        load_edit(other, out)
    moved = load_edit(other, out, transfer=True)
    edited = named_tensors(result.pipeline)
    for name, t in named_tensors(moved).items():
        if name.startswith("text_encoder."):
            assert torch.equal(t, edited[name])  # the erased encoder, exactly
    assert torch.equal(named_tensors(moved)["unet.conv_in.weight"],
                       named_tensors(tiny_pipeline(seed=1))["unet.conv_in.weight"])  # its own UNet
    with pytest.raises(EraselabError, match="text encoder differs"):
        load_edit(tiny_pipeline(seed=1), out, transfer=True)


def test_only_a_text_encoder_edit_transfers(tmp_path):
    out = erase(tiny_pipeline(), "uce", "snoopy", seed=0, progress=False).save(tmp_path / "uce")
    with pytest.raises(EraselabError, match="only a text-encoder edit transfers"):
        load_edit(_sharing_text_encoder(seed=1), out, transfer=True)


def test_a_divergence_message_names_every_learning_rate_of_the_config():
    from methods.base import EmptyConfig, finite_value
    from methods.stereo import StereoConfig
    with pytest.raises(EraselabError) as err:
        finite_value(torch.tensor(float("nan")), "stereo: loss", 3, 10, StereoConfig(), "lower the lrs")
    assert "ste_lr=5e-06" in str(err.value) and "reo_lr=2e-05" in str(err.value)
    with pytest.raises(EraselabError, match=r"lr=\?"):
        finite_value(torch.tensor(float("inf")), "x", 1, 1, EmptyConfig(), "")
