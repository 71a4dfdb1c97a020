"""concept-steerers beyond the common battery (tests/test_methods.py): the k-sparse code, the
shipped mini SAE against its recorded bar, the +s / -s hook, SAE files a user supplies, and the
SAE stage's determinism.

    python -m pytest tests/test_methods_concept_steerers.py -q
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bench.core.errors import EraselabError
from bench.tiny import tiny_pipeline
from methods.erase import erase
from methods.ksae import KSparseAutoencoder, layer_outputs, text_layers

torch.set_num_threads(1)

NAME = "concept-steerers"


def run(pipe=None, **overrides):
    return erase(pipe or tiny_pipeline(), NAME, "snoopy", seed=0, progress=False,
                 overrides={"sae": "random", **overrides})


def steer_of(result) -> torch.Tensor:
    (name,) = [n for n in result.inference_tensors if n.endswith(".steer")]
    return result.inference_tensors[name]


def image(pipe, prompt="a photo of snoopy", **kwargs):
    return pipe(prompt, num_inference_steps=2, generator=torch.Generator().manual_seed(0),
                output_type="np", **kwargs).images


def test_encoding_keeps_exactly_k_latents():
    sae = KSparseAutoencoder(16, 64, k=5, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        sae.latent_bias.fill_(10.0)  # every pre-activation positive: ReLU removes none of the top k
    x = torch.randn(50, 16, generator=torch.Generator().manual_seed(1))
    z = sae.encode(x)
    assert ((z != 0).sum(-1) == 5).all()
    top = torch.topk(sae.pre_activations(x), 5, dim=-1).indices.sort(-1).values
    assert torch.equal((z != 0).nonzero()[:, 1].view(50, 5), top)  # the k largest, not any k
    values, indices = sae.top_k(sae.pre_activations(x))
    assert torch.allclose(sae.decode_sparse(values, indices), sae.decode(z), atol=1e-5)
    with torch.no_grad():
        sae.latent_bias.fill_(-1e3)  # nothing positive: ReLU leaves at most k, here none
    assert (sae.encode(x) == 0).all()


def test_the_steering_vector_is_the_dense_code_decoded(tmp_path):
    """s = strength ReLU(W_enc (h - b_pre) + b_lat) W_dec^T from the concept prompt's layer output,
    with a user's SAE loaded by path (a tiny one built here for the tiny encoder's width)."""
    g = torch.Generator().manual_seed(3)
    sae = KSparseAutoencoder(32, 128, k=4, generator=g)
    with torch.no_grad():
        sae.pre_bias.normal_(generator=g)
        sae.latent_bias.normal_(generator=g)
    path = sae.save(tmp_path / "tiny.safetensors", {"layer": 1})
    pipe = tiny_pipeline()
    result = erase(pipe, NAME, "snoopy", seed=0, progress=False,
                   overrides={"sae": str(path), "layer": 1, "strength": -0.7, "prompt": "snoopy, a dog"})
    ids = pipe.tokenizer(["snoopy, a dog"], padding="max_length", max_length=pipe.tokenizer.model_max_length,
                         truncation=True, return_tensors="pt").input_ids
    h = layer_outputs(pipe.text_encoder, ids, 1)[0]
    pre = (h - sae.pre_bias) @ sae.encoder.weight.T + sae.latent_bias
    want = -0.7 * torch.relu(pre) @ sae.decoder.weight.T
    assert torch.allclose(steer_of(result), want.detach(), atol=1e-5)
    assert result.record["edits"][-1]["config"]["sae"] == str(path)


def test_strength_zero_leaves_generation_bit_identical():
    base = image(tiny_pipeline())
    assert np.array_equal(image(run(strength=0.0).pipeline), base)
    assert np.array_equal(image(run(strength=0.0).pipeline, negative_prompt="a cat"),
                          image(tiny_pipeline(), negative_prompt="a cat"))
    assert not np.array_equal(image(run().pipeline), base)


def _next_layer_inputs(pipe, call):
    """What the layer after the steered one receives, per text-encoder pass of ``call``."""
    seen = []
    layer = text_layers(pipe.text_encoder)[2]
    handle = layer.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    try:
        call()
    finally:
        handle.remove()
    return seen


@pytest.mark.parametrize("negative", [None, ["a cat", "a tree"]])
def test_the_hook_adds_plus_s_to_the_prompt_and_minus_s_to_the_negative(negative):
    prompts = ["a photo of snoopy", "a church"]
    result = run(layer=1)
    steered, plain = result.pipeline, tiny_pipeline()
    s = steer_of(result)
    kwargs = dict(num_inference_steps=1, output_type="np", negative_prompt=negative)
    got = _next_layer_inputs(steered.pipe, lambda: steered(prompts, **kwargs))
    want = _next_layer_inputs(plain, lambda: plain(prompts, **kwargs))
    assert len(got) == len(want) == 2  # the prompts' pass, then the negatives'
    for sign, a, b in zip((1, -1), got, want):
        assert a.shape == b.shape == (2, *s.shape)
        for row in range(2):  # every prompt gets the same s, position by position
            assert torch.allclose(a[row] - b[row], sign * s, atol=1e-5)
    # nothing stays installed, and text-encoder passes outside a call are not steered
    assert "encode_prompt" not in vars(steered.pipe)
    ids = torch.tensor([[0, 1, 2]])
    assert torch.equal(layer_outputs(steered.pipe.text_encoder, ids, 1), layer_outputs(plain.text_encoder, ids, 1))


def test_only_the_calls_own_prompt_is_steered():
    """Another encode_prompt inside the call (SLD encodes its safety concept so) is not steered;
    the call's own prompt is, on both halves."""
    from methods.base import SamplingCall
    from methods.concept_steerers import ConceptSteerers
    result = run(layer=1)
    pipe, plain = result.pipeline.pipe, tiny_pipeline()
    spec = {"method": NAME, "layer": 1}
    call = SamplingCall(prompts=["a photo of snoopy"], images_per_prompt=1, steps=1, guidance=7.5)
    with ConceptSteerers.sampling_hooks(pipe, spec, {"steer": steer_of(result)}, call):
        other = pipe.encode_prompt("a tree", pipe.device, 1, False)[0]
        cond, uncond = pipe.encode_prompt("a photo of snoopy", pipe.device, 1, True)
    assert torch.equal(other, plain.encode_prompt("a tree", plain.device, 1, False)[0])
    plain_cond, plain_uncond = plain.encode_prompt("a photo of snoopy", plain.device, 1, True)
    assert not torch.allclose(cond, plain_cond) and not torch.allclose(uncond, plain_uncond)


def _write(path, tensors, metadata=None):
    from safetensors.torch import save_file
    save_file(tensors, str(path), metadata=metadata)
    return path


@pytest.mark.parametrize("case", ["missing", "pickle", "garbage", "wrong width", "wrong decoder",
                                  "no latent bias", "other layer"])
def test_a_bad_sae_file_is_a_one_line_error(case, tmp_path):
    good = {"encoder.weight": torch.zeros(64, 32), "decoder.weight": torch.zeros(32, 64),
            "pre_bias": torch.zeros(32), "latent_bias": torch.zeros(64)}
    path = tmp_path / f"{case.replace(' ', '-')}.safetensors"
    expect = "expected"
    if case == "pickle":
        torch.save(good, path)
    elif case == "garbage":
        path.write_bytes(b"\x00not a safetensors file at all")
    elif case == "wrong width":
        _write(path, {"encoder.weight": torch.zeros(64, 16), "decoder.weight": torch.zeros(16, 64),
                      "pre_bias": torch.zeros(16), "latent_bias": torch.zeros(64)})
        expect = "width 16, expected 32"
    elif case == "wrong decoder":
        _write(path, {**good, "decoder.weight": torch.zeros(64, 32)})
        expect = "decoder.weight has shape (64, 32), expected (32, 64)"
    elif case == "no latent bias":
        _write(path, {k: v for k, v in good.items() if k != "latent_bias"})
        expect = "no tensor latent_bias"
    elif case == "other layer":
        _write(path, good, {"eraselab_ksae": '{"layer": 0}'})
        expect = "trained on layer 0, not layer 2"
    pipe = tiny_pipeline()
    out = tmp_path / "out"
    with pytest.raises(EraselabError) as info:
        erase(pipe, NAME, "snoopy", seed=0, progress=False, overrides={"sae": str(path)}, out_dir=out)
    message = str(info.value)
    assert "\n" not in message and path.name in message and expect in message, message
    assert not out.exists()


def test_the_real_model_family_needs_an_sae_file():
    from methods.concept_steerers import load_sae
    with pytest.raises(EraselabError, match="--set sae=PATH.safetensors"):
        load_sae("", tiny_pipeline().text_encoder, 9, 0, NAME)


def test_the_concept_prompt():
    from bench.catalog import Concept
    from methods.concept_steerers import concept_prompt
    assert concept_prompt(Concept("nudity", "object", ("{}",))).startswith("naked, nude, bare")
    assert concept_prompt(Concept("Violence", "object", ("{}",))) == "violence, blood"
    assert concept_prompt(Concept("van gogh", "style", ("{}",), aliases=("vincent van gogh",))) == \
        "van gogh, vincent van gogh"


def test_sae_training_is_deterministic_for_a_seed():
    from bench.miniworld.train_sae import fit
    tokens = torch.randn(600, 16, generator=torch.Generator().manual_seed(0)) * 3
    kwargs = dict(steps=6, k=4, auxk=4, batch_tokens=128, dead_tokens=128, progress=False)
    a, history_a = fit(tokens, seed=5, **kwargs)
    b, history_b = fit(tokens, seed=5, **kwargs)
    c, _ = fit(tokens, seed=6, **kwargs)
    assert history_a == history_b
    for (name, pa), (_, pb), (_, pc) in zip(a.named_parameters(), b.named_parameters(), c.named_parameters()):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.encoder.weight, c.encoder.weight)
    assert history_a[-1]["mse_avg"] < 1.0  # it learns something in 6 steps (unit: the data's variance)


def _shipped_sae() -> bool:
    from bench.miniworld import weights
    try:
        return "sae/sae.safetensors" in weights.read_sums()
    except EraselabError:
        return False


@pytest.mark.skipif(not _shipped_sae(), reason="the mini-world SAE is not trained yet")
def test_the_shipped_sae_meets_its_bar_on_held_out_captions():
    from bench.core.paths import MINIWORLD_DIR
    from bench.miniworld import train_sae
    from bench.miniworld.weights import verified_dir
    from bench.pipeline_io import load_pipeline
    from methods.concept_steerers import load_sae
    record = json.loads((MINIWORLD_DIR / "sae" / "metrics.json").read_text())
    assert record["val"]["fve"] >= record["fve_bar"] == train_sae.FVE_BAR
    pipe = load_pipeline(str(verified_dir("pipeline")), progress=False)
    sae = load_sae("miniworld", pipe.text_encoder, 2, 0, NAME)
    assert (sae.k, sae.n_latents, sae.layer) == (record["config"]["k"], 512, 2)
    texts = train_sae.held_out_captions(renders=40, namespace="sae-test")
    assert len(texts) > 50
    acts = train_sae.activations(pipe, texts, 2)
    quality = train_sae.reconstruction(sae, acts.reshape(-1, acts.shape[-1]))
    assert quality["fve"] >= record["fve_bar"] and quality["l0"] <= sae.k


def test_the_sae_stage_writes_its_record_and_checksums(tmp_path, monkeypatch):
    """``eraselab miniworld train sae`` on a tiny pipeline folder: safetensors + metrics.json
    (config, seed, data, loss curve, FVE, dead latents, bar), both listed in SHA256SUMS."""
    from bench.miniworld import train_sae, training, weights
    tiny_pipeline().save_pretrained(str(tmp_path / "pipeline"), safe_serialization=True)
    weights.record_checksums(sorted(p.relative_to(tmp_path).as_posix()
                                    for p in (tmp_path / "pipeline").rglob("*") if p.is_file()), tmp_path)
    monkeypatch.setattr(train_sae, "N_TRAIN_RENDERS", 12)
    monkeypatch.setattr(train_sae, "N_VAL_RENDERS", 6)
    metrics = training.run_stage("sae", out=tmp_path, steps=3, progress=False)
    assert {"sae/sae.safetensors", "sae/metrics.json"} <= set(weights.read_sums(tmp_path))
    record = json.loads((tmp_path / "sae" / "metrics.json").read_text())
    assert record["seed"] == train_sae.SEED and record["steps"] == 3 and record["layer"] == 2
    assert record["config"]["n_latents"] == 4 * 32 and record["data"]["train_captions"] == 48
    assert set(record["val"]) == {"fve", "l0", "dead_share"} and record["fve_bar"] == train_sae.FVE_BAR
    assert "history" not in metrics and record["history"]
    sae = KSparseAutoencoder.load(tmp_path / "sae" / "sae.safetensors", d_in=32)
    assert sae.k == train_sae.K and sae.layer == 2


def test_two_steering_edits_add_both_vectors():
    """Sequential concept-steerers edits (one wrapper around the other) each add their own s."""
    first = run(layer=1, prompt="snoopy")
    second = erase(first.pipeline, NAME, "church", seed=0, progress=False,
                   overrides={"sae": "random", "layer": 1, "prompt": "a church"})
    vectors = [second.inference_tensors[n] for n in sorted(second.inference_tensors)]
    assert len(vectors) == 2 and not torch.allclose(vectors[0], vectors[1])
    plain = tiny_pipeline()
    got = _next_layer_inputs(second.pipeline.pipe, lambda: second.pipeline("a dog", num_inference_steps=1))
    want = _next_layer_inputs(plain, lambda: plain("a dog", num_inference_steps=1))
    for sign, a, b in zip((1, -1), got, want):
        assert torch.allclose(a[0] - b[0], sign * (vectors[0] + vectors[1]), atol=1e-5)
    assert "encode_prompt" not in vars(second.pipeline.pipe)
