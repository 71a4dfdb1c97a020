"""Mini-world model code: text-tower conversion, checksummed loading, one training step per stage,
and (once shipped) deterministic generation with the shipped pipeline."""

import json
import sys

import numpy as np
import pytest
import torch

from bench.core.errors import EraselabError
from bench.miniworld import weights
from bench.miniworld.clip_model import CLIP_CONFIG, build_clip, tokenize
from bench.miniworld.convert import build_clip_tokenizer, openclip_hidden_states, openclip_to_text_model
from bench.core.paths import MINIWORLD_DIR

TINY_CLIP = {"embed_dim": 32, "quick_gelu": True,
             "vision_cfg": {"image_size": 64, "patch_size": 16, "width": 32, "layers": 1, "head_width": 16},
             "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}}
TINY_UNET = dict(sample_size=16, in_channels=4, out_channels=4, layers_per_block=1,
                 block_out_channels=(32, 32), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                 up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
                 attention_head_dim=4, norm_num_groups=32)
TEXTS = ["a photo of snoopy", "SNOOPY!!", "a Café über 🙂 test", "Hello, World. it's 3 o'clock",
         "a van gogh painting of the red church on grass", "word " * 40]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    torch.manual_seed(0)
    clip = build_clip(CLIP_CONFIG).eval()
    text_model = openclip_to_text_model(clip, CLIP_CONFIG)
    tokenizer = build_clip_tokenizer(tmp_path_factory.mktemp("tok"), CLIP_CONFIG["text_cfg"]["context_length"])
    return clip, text_model, tokenizer


def test_tokenizer_ids_equal_open_clip(converted):
    _, _, tokenizer = converted
    ours = tokenizer(TEXTS, padding="max_length", max_length=32, truncation=True, return_tensors="pt").input_ids
    theirs = tokenize(TEXTS)
    # open_clip pads with 0 and the SD tokenizer with end-of-text: compare up to each text's EOT.
    for a, b in zip(ours, theirs):
        end = int((b == 49407).nonzero()[0]) + 1
        assert a[:end].tolist() == b[:end].tolist()
        assert (a[end:] == 49407).all()


def test_hidden_states_equal_after_conversion(converted):
    clip, text_model, tokenizer = converted
    ids = tokenizer(TEXTS, padding="max_length", max_length=32, truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        ours = text_model(ids).last_hidden_state
    assert torch.allclose(ours, openclip_hidden_states(clip, ids), atol=1e-4)
    # pooled output at the first end-of-text token equals open_clip's text features before projection
    with torch.no_grad():
        feats = clip.encode_text(ids)
        pooled = text_model(ids).pooler_output @ clip.text_projection
    assert torch.allclose(pooled, feats, atol=1e-4)


def test_conversion_is_strict(converted):
    clip, _, _ = converted
    broken = dict(CLIP_CONFIG, text_cfg=dict(CLIP_CONFIG["text_cfg"], layers=5))
    with pytest.raises(RuntimeError):
        openclip_to_text_model(clip, broken)


def test_checksums_missing_and_mismatch(tmp_path):
    (tmp_path / "clip").mkdir()
    target = tmp_path / "clip" / "model.safetensors"
    target.write_bytes(b"weights")
    weights.record_checksums(["clip/model.safetensors"], tmp_path)
    assert weights.verified_path("clip/model.safetensors", tmp_path) == target
    target.write_bytes(b"tampered")
    with pytest.raises(EraselabError, match=r"model.safetensors: SHA-256 mismatch") as info:
        weights.verified_path("clip/model.safetensors", tmp_path)
    assert "\n" not in str(info.value)
    target.unlink()
    with pytest.raises(EraselabError, match="missing mini-world weight file"):
        weights.verified_path("clip/model.safetensors", tmp_path)
    (tmp_path / weights.SUMS_FILE).unlink()
    with pytest.raises(EraselabError, match="SHA256SUMS: missing"):
        weights.read_sums(tmp_path)


@pytest.mark.slow
def test_each_training_stage_runs_one_step(tmp_path, monkeypatch):
    """clip -> clip-image -> vae -> unet (pipeline assembled) -> decoder -> probe, tiny configs,
    one step each."""
    from diffusers import AutoencoderKL, StableDiffusionPipeline
    from bench.miniworld import train_clip, train_clip_image, train_decoder, train_probe, train_unet, train_vae
    monkeypatch.setattr(train_clip, "validation_set", lambda n_per_label=20: _small_val(train_clip))
    monkeypatch.setattr(train_decoder, "N_VAL_PER_STYLE", 4)  # the held-out PSNRs' sizes, not their logic
    monkeypatch.setattr(train_vae, "N_VAL", 16)
    from bench.miniworld import budget
    monkeypatch.setattr(budget, "PROBE_STEPS", 4)  # the timed probe's length, not its logic
    monkeypatch.setattr(budget, "SKIP", 2)
    ck = tmp_path / "checkpoints"
    m = train_clip.train(tmp_path / "clip", ck, tmp_path, steps=1, n_train=32, batch=8, progress=False,
                         config=TINY_CLIP)
    assert (tmp_path / "clip" / "model.safetensors").is_file() and m["history"]
    _image_tower_step_keeps_the_text_tower(tmp_path, ck, train_clip_image)
    _new_image_tower_keeps_the_text_tower(tmp_path, train_clip_image)
    m = train_vae.train(tmp_path / "vae", ck, tmp_path, steps=1, n_train=32, progress=False)
    assert m["scaling_factor"] > 0 and (tmp_path / "vae" / "config.json").is_file()
    m = train_unet.train(tmp_path / "pipeline", ck, tmp_path, steps=1, n_train=32, batch=4,
                         progress=False, unet_config=TINY_UNET)
    pipe = StableDiffusionPipeline.from_pretrained(str(tmp_path / "pipeline"), torch_dtype=torch.float32)
    assert pipe.unet.config.cross_attention_dim == 32
    assert json.loads((tmp_path / "pipeline" / "metrics.json").read_text())["steps"] == 1
    _mirror_latents_encode_mirror_images(tmp_path, ck, train_unet, AutoencoderKL)
    _decoder_step_keeps_the_encoder(tmp_path, ck, train_decoder, AutoencoderKL)
    _warm_start_loads_the_trained_unet(tmp_path, train_unet)
    _time_budget_fixes_the_step_count(tmp_path, train_unet)
    _gpu_round_exports_and_assembles(tmp_path, monkeypatch)
    monkeypatch.setattr(train_probe, "N_PER_CLASS", 6)
    monkeypatch.setattr(train_probe, "N_VAL_PER_CLASS", 2)
    m = train_probe.train(tmp_path / "probe", ck, tmp_path, progress=False)
    assert 0.0 <= m["val_accuracy"] <= 1.0 and (tmp_path / "probe" / "probe.json").is_file()


def _image_tower_step_keeps_the_text_tower(tmp_path, ck, train_clip_image):
    """The clip-image stage changes the image tower only: the SD text encoder stays valid."""
    from safetensors.torch import load_file
    before = load_file(str(tmp_path / "clip" / "model.safetensors"))
    m = train_clip_image.train(tmp_path / "clip", ck, tmp_path, steps=1, n_train=32, batch=8, progress=False)
    assert set(m["val_zero_shot_after"]) == set(m["val_zero_shot_before"])
    assert m["distill_weight"] == train_clip_image.DISTILL_WEIGHT and m["style_pairs"] == 19
    pools, sets, twins = train_clip_image._training_pools(32, ck, progress=False)
    pixels, captions, twin_pixels = train_clip_image._batch(pools, sets, twins, 8, step=0)
    assert len(pixels) == len(captions) == 8 and len(twin_pixels) == 4  # the styled half, first
    styled_ids = pools["styled"][1]
    assert any(np.array_equal(pixels[0], sets[2].images[i]) and np.array_equal(twin_pixels[0], twins[i])
               for i in styled_ids)
    after = load_file(str(tmp_path / "clip" / "model.safetensors"))
    assert set(after) == set(before)
    for name, tensor in before.items():
        if not name.startswith("visual."):
            assert torch.equal(after[name], tensor), name
    assert any(not torch.equal(after[n], t) for n, t in before.items() if n.startswith("visual."))


def _mirror_latents_encode_mirror_images(tmp_path, ck, train_unet, AutoencoderKL):
    """The UNet's mirrored views are encodings of mirror images, not flipped latents (the encoder
    is not flip-equivariant: a flipped latent decodes to another, blurrier picture)."""
    from bench.miniworld.data import TRAINING_MIX, render_dataset
    from bench.miniworld.train_vae import to_vae_input
    vae = AutoencoderKL.from_pretrained(str(tmp_path / "vae")).eval()
    data = render_dataset(32, 0, cache_dir=ck, progress=False, **TRAINING_MIX)
    mean, std = train_unet.views_moments(vae, data.images, train_unet.latents_cache_path(ck, 32, vae), False)
    assert mean.shape == std.shape == (2, 32, 4, 16, 16)
    with torch.no_grad():
        want = vae.encode(to_vae_input(np.ascontiguousarray(data.images[:4, :, ::-1]))).latent_dist.mean
    assert torch.allclose(mean[1, :4], want, atol=1e-5)
    assert not torch.allclose(mean[1, :4], mean[0, :4].flip(-1), atol=1e-3)


def _time_budget_fixes_the_step_count(tmp_path, train_unet):
    """--time-budget fixes the step count after the timed probe steps (a budget too small for
    more gives exactly PROBE_STEPS)."""
    from bench.miniworld.budget import PROBE_STEPS
    run = tmp_path / "work" / "budget"
    m = train_unet.train(run / "pipeline", run / "checkpoints", tmp_path, n_train=32, batch=2,
                         progress=False, unet_config=TINY_UNET, time_budget=1e-6)
    assert m["steps"] == PROBE_STEPS == m["steps_from_time_budget"]["steps"]
    assert m["history"][-1]["step"] == m["steps"] and np.isfinite(m["history"][-1]["loss_avg50"])


def _gpu_round_exports_and_assembles(tmp_path, monkeypatch):
    """gpu_round: the fp16 shards of a UNet, an image-tower and a decoder run assemble back into
    the same UNet, clip/ (the text tower from the root's clip/) and vae/ (the root's encoder)."""
    from diffusers import UNet2DConditionModel
    from safetensors.torch import load_file
    from bench.miniworld import gpu_round
    from bench.miniworld import train_decoder
    import shutil
    run = tmp_path / "work" / "dec"  # a decoder round continues vae/ as found
    shutil.copytree(tmp_path / "vae", run / "vae")
    train_decoder.train(run / "vae", run / "checkpoints", run, n_train=32, batch=4, progress=False,
                        time_budget=1e-6)
    monkeypatch.setattr(gpu_round, "SHARD_BYTES", 100_000)  # force several shards
    gpu_round.export(tmp_path / "work", tmp_path / "out")
    for name, kind in (("budget", "unet"), ("clipnew", "clip-image"), ("dec", "decoder")):
        summary = json.loads((tmp_path / "out" / f"{name}_metrics.json").read_text())
        assert summary["kind"] == kind and summary["finished"] and summary["shards"] > 1
        gpu_round.assemble(tmp_path / "out", name, tmp_path / f"assembled_{name}", root=tmp_path)
    got = UNet2DConditionModel.from_pretrained(str(tmp_path / "assembled_budget" / "unet")).state_dict()
    want = UNet2DConditionModel.from_pretrained(str(tmp_path / "work" / "budget" / "pipeline" / "unet")).state_dict()
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    assert (tmp_path / "assembled_budget" / "tokenizer" / "tokenizer_config.json").is_file()
    got = load_file(str(tmp_path / "assembled_clipnew" / "model.safetensors"))
    want = load_file(str(tmp_path / "work" / "clipnew" / "clip" / "model.safetensors"))
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    got = load_file(str(tmp_path / "assembled_dec" / "diffusion_pytorch_model.safetensors"))
    want = load_file(str(run / "vae" / "diffusion_pytorch_model.safetensors"))
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    shipped = load_file(str(tmp_path / "vae" / "diffusion_pytorch_model.safetensors"))
    assert all(torch.equal(got[k], shipped[k]) for k in got if k.startswith(("encoder.", "quant_conv.")))
    assert any(not torch.equal(got[k], shipped[k]) for k in got if k.startswith("decoder."))


def test_every_unet_width_builds():
    from bench.miniworld import train_unet
    counts = [sum(p.numel() for p in train_unet.build_unet(128, train_unet.unet_config_for(size)).parameters())
              for size in ("small", "medium", "wide")]
    assert counts[0] < counts[1] < counts[2]


def test_parallel_rendering_gives_the_same_set():
    from bench.miniworld.data import RENDER_CHUNK, TRAINING_MIX, render_dataset
    n = RENDER_CHUNK + 7  # two chunks, the second partial
    serial = render_dataset(n, 3, progress=False, **TRAINING_MIX)
    parallel = render_dataset(n, 3, progress=False, workers=2, **TRAINING_MIX)
    assert np.array_equal(serial.images, parallel.images) and serial.records == parallel.records


def _new_image_tower_keeps_the_text_tower(tmp_path, train_clip_image):
    """clip-image --size: a new image tower of that size, trained against the copied, locked text
    tower, for as many steps as a (tiny) time budget allows."""
    import shutil
    from safetensors.torch import load_file
    from bench.miniworld.budget import PROBE_STEPS
    run = tmp_path / "work" / "clipnew"  # laid out as gpu_round's runs, which a later step exports
    shutil.copytree(tmp_path / "clip", run / "clip")
    before = load_file(str(tmp_path / "clip" / "model.safetensors"))
    m = train_clip_image.train(run / "clip", run / "checkpoints", tmp_path, n_train=32, batch=8,
                               progress=False, size="small", time_budget=1e-6)
    assert m["steps"] == PROBE_STEPS and m["vision_cfg"]["width"] == 128 and "new image tower" in m["started_from"]
    after = load_file(str(run / "clip" / "model.safetensors"))
    config = json.loads((run / "clip" / "open_clip_config.json").read_text())
    assert config["vision_cfg"]["width"] == 128 and config["text_cfg"] == TINY_CLIP["text_cfg"]
    for name, tensor in before.items():
        if not name.startswith("visual."):
            assert torch.equal(after[name], tensor), name


def _warm_start_loads_the_trained_unet(tmp_path, train_unet):
    """--init-from: a fresh UNet takes the saved weights (model and EMA); a wrong shape is one line."""
    fresh = train_unet.build_unet(32, TINY_UNET)
    ema = train_unet.build_unet(32, TINY_UNET)
    train_unet.warm_start(fresh, ema, tmp_path / "pipeline" / "unet")
    from diffusers import UNet2DConditionModel
    saved = UNet2DConditionModel.from_pretrained(str(tmp_path / "pipeline" / "unet"),
                                                 torch_dtype=torch.float32).state_dict()
    assert all(torch.equal(fresh.state_dict()[k], v) and torch.equal(ema.state_dict()[k], v)
               for k, v in saved.items())
    with pytest.raises(EraselabError, match="--init-from"):
        train_unet.warm_start(train_unet.build_unet(64, TINY_UNET), ema, tmp_path / "pipeline" / "unet")


def _decoder_step_keeps_the_encoder(tmp_path, ck, train_decoder, AutoencoderKL):
    """The decoder stage changes the decoder only, in vae/ and in the pipeline's vae/ alike."""
    before = AutoencoderKL.from_pretrained(str(tmp_path / "vae")).state_dict()
    m = train_decoder.train(tmp_path / "vae", ck, tmp_path, steps=1, n_train=32, progress=False)
    assert m["pipeline_vae_replaced"] and set(m["held_out_psnr_db_after"]) == set(m["held_out_psnr_db_before"])
    after = AutoencoderKL.from_pretrained(str(tmp_path / "vae")).state_dict()
    in_pipeline = AutoencoderKL.from_pretrained(str(tmp_path / "pipeline" / "vae")).state_dict()
    for name, tensor in before.items():
        if name.startswith(("encoder.", "quant_conv.")):
            assert torch.equal(after[name], tensor), name
        assert torch.equal(in_pipeline[name], after[name]), name
    assert any(not torch.equal(after[n], t) for n, t in before.items() if n.startswith("decoder."))
    assert (tmp_path / "vae" / "metrics.json").is_file()  # the VAE stage's record stays
    assert "--refine-shipped" not in m["started_from"] and m["recipe"] == 3
    again = train_decoder.train(tmp_path / "vae", ck, tmp_path, steps=1, n_train=32, progress=False,
                                refine_shipped=True)
    assert again["started_from"] == "vae/ as found (--refine-shipped)" and again["recipe"] == 4
    assert again["replaced_run"]["started_from"] == m["started_from"]
    for config in list((tmp_path / "pipeline").rglob("config.json")) + [tmp_path / "vae" / "config.json"]:
        assert "_name_or_path" not in json.loads(config.read_text()), config  # no local paths shipped


def _small_val(module):
    images, labels = [], []
    from bench.miniworld import render as mw
    for label in module.clip_labels():
        images.append(mw.render(label, "plain", 0).image)
        labels.append(label)
    return np.stack(images), labels, ["plain"] * len(labels)


def test_run_stage_records_every_output_folder(tmp_path, monkeypatch):
    """The decoder stage rewrites vae/ and pipeline/vae/: both land in SHA256SUMS."""
    import types
    from bench.miniworld import training

    def fake_train(out_dir, ckpt_dir, root, **kwargs):
        for folder in (out_dir, root / "pipeline" / "vae"):
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "weights.safetensors").write_bytes(b"w")
        return {"steps": 1}

    fake = types.ModuleType("fake_decoder")
    fake.train = fake_train
    monkeypatch.setitem(sys.modules, "fake_decoder", fake)
    monkeypatch.setitem(training.STAGE_MODULES, "decoder", "fake_decoder")
    training.run_stage("decoder", out=tmp_path, progress=False)
    assert {"vae/weights.safetensors", "pipeline/vae/weights.safetensors"} <= set(weights.read_sums(tmp_path))


def _shipped(relpath: str) -> bool:
    try:
        return relpath in weights.read_sums()
    except EraselabError:
        return False


@pytest.mark.skipif(not _shipped("pipeline/model_index.json"), reason="mini-world pipeline not trained yet")
def test_shipped_pipeline_generates_deterministically():
    from bench.generate import generate
    from bench.pipeline_io import load_pipeline
    pipe = load_pipeline(str(weights.verified_dir("pipeline")))
    a = generate(pipe, ["a photo of snoopy", "a photo of a church"], seeds=[1, 2], steps=4, batch_size=2)
    b = generate(pipe, ["a photo of snoopy", "a photo of a church"], seeds=[1, 2], steps=4, batch_size=2)
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b))
    assert not np.array_equal(np.asarray(a[0]), np.asarray(a[1]))


def test_fp16_pipeline_folder_loads_in_one_dtype(tmp_path):
    """The shipped folder is fp16; loading it for the CPU must give float32 everywhere (transformers
    5.x alone would keep the text encoder in fp16 while diffusers makes the UNet float32)."""
    import torch

    from bench.generate import generate
    from bench.pipeline_io import load_pipeline
    from bench.tiny import tiny_pipeline
    tiny_pipeline().to(torch.float16).save_pretrained(str(tmp_path / "pipe"), safe_serialization=True)
    pipe = load_pipeline(str(tmp_path / "pipe"), progress=False)
    assert {pipe.unet.dtype, pipe.vae.dtype, pipe.text_encoder.dtype} == {torch.float32}
    assert len(generate(pipe, ["a photo of snoopy"], seeds=[0], steps=2, batch_size=1)) == 1


def test_focus_weights_draw_weak_concepts_more_often():
    """--focus: an image's probability is its concept weight times its style weight; the draw
    is a function of the step (a resumed run sees the same batches)."""
    from bench.miniworld.data import image_weights, weighted_batch_indices
    records = [{"concept": "tench", "style": "plain"}, {"concept": "snoopy", "style": "plain"},
               {"concept": "tench", "style": "sketch"}, {"concept": "nothing", "style": "plain"}]
    p = image_weights(records, {"tench": 2.0, "sketch": 1.5})
    assert np.allclose(p, np.array([2.0, 1.0, 3.0, 1.0]) / 7.0)
    a = weighted_batch_indices(p, 4000, "unet-focus", 7, 2)
    assert np.array_equal(a, weighted_batch_indices(p, 4000, "unet-focus", 7, 2))
    assert not np.array_equal(a, weighted_batch_indices(p, 4000, "unet-focus", 8, 2))
    counts = np.bincount(a, minlength=4) / len(a)
    assert np.allclose(counts, p, atol=0.03)


def test_refining_stages_start_from_the_earlier_stage(tmp_path):
    """clip-image and decoder load the earlier stage's checkpoint when it is here (re-running
    them does not compound) and say when it is not."""
    from bench.miniworld.checkpoint import save_checkpoint, start_from_stage
    source, target = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    assert "as found" in start_from_stage(target, tmp_path / "vae.pt", "vae/")
    assert not torch.equal(source.weight, target.weight)
    save_checkpoint(tmp_path / "vae.pt", 7, model=source)
    assert start_from_stage(target, tmp_path / "vae.pt", "vae/") == "vae.pt (step 7)"
    assert torch.equal(source.weight, target.weight)


def test_model_card_counts_every_warm_started_round(tmp_path):
    """A fine-tuned UNet's training record lists its bases' steps, seconds and devices (a device
    once while it repeats), histories dropped."""
    from bench.miniworld.evaluate import _rounds, _stage_metrics
    scratch = {"steps": 9200, "train_seconds_total": 100.0, "history": [1], "device": "cuda",
               "device_name": "NVIDIA H200"}
    first = {"steps": 2400, "train_seconds_total": 40.0, "history": [2], "base_metrics": scratch, "device": "cpu"}
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"steps": 1800, "train_seconds_total": 30.0, "history": [3], "base_metrics": first,
                                "device": "cpu"}))
    m = _stage_metrics(path)
    assert "history" not in m and "history" not in m["base_metrics"]["base_metrics"]
    assert _rounds(m) == ("9200 + 2400 + 1800", "100.0 + 40.0 + 30.0", "NVIDIA H200 + cpu")


def test_step_budget_fixes_the_count_from_the_timed_steps(monkeypatch):
    """Steps SKIP..PROBE_STEPS are timed; the count is what fits the budget, rounded down to a
    hundred, never fewer than the steps already run; no budget keeps the count."""
    from bench.miniworld import budget
    clock = iter(range(0, 10_000, 2))  # every call of time.time() is 2 s after the last
    monkeypatch.setattr(budget.time, "time", lambda: next(clock))
    b = budget.StepBudget(seconds=1000.0, start=0)
    counts = [b.steps_after(step, 5000) for step in range(1, budget.PROBE_STEPS + 1)]
    assert counts[:-1] == [5000] * (budget.PROBE_STEPS - 1)
    per_step = 2 / (budget.PROBE_STEPS - budget.SKIP)  # two clock reads, 2 s apart, over the probe
    assert b.record["seconds_per_step"] == round(per_step, 4)
    assert counts[-1] == int(1000 / per_step) // 100 * 100
    tight = budget.StepBudget(seconds=1e-6, start=100)
    assert [tight.steps_after(s, 5000) for s in range(101, 101 + budget.PROBE_STEPS)][-1] == 100 + budget.PROBE_STEPS
    assert budget.StepBudget(None, 0).steps_after(budget.PROBE_STEPS, 5000) == 5000
