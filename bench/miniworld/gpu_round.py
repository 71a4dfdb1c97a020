"""Train UNet or image-tower candidates on a lent GPU and bring them back as small files.

A lent GPU gives one short session (minutes, files of at most 16 MiB coming back), so a round is
a few steps, each a subcommand:

    # on the GPU machine, from the repository root:
    python3 -m bench.miniworld.gpu_round prepare --work /tmp/w --workers 14
    python3 -m bench.miniworld.gpu_round unet --work /tmp/w --name wide --size wide \
        --batch 256 --lr 8e-4 --time-budget 420 &      # several candidates may share the GPU
    python3 -m bench.miniworld.gpu_round clip --work /tmp/w --name clip-wide --size wide \
        --batch 512 --time-budget 400 &
    python3 -m bench.miniworld.gpu_round decoder --work /tmp/w --name decoder --batch 128 --time-budget 400 &
    python3 -m bench.miniworld.gpu_round export --work /tmp/w --out "$OUT"
    # back here:
    python3 -m bench.miniworld.gpu_round assemble --shards DIR --name wide --out runs/unet-wide
    python3 -m bench.miniworld.gpu_round assemble --shards DIR --name clip-wide --out runs/clip-wide

bench/miniworld/gpu_round.sh is a whole device command (by default three UNet widths side by
side, the round that chose the shipped wide UNet: benchmarks/results/gpu_round/); it expects diffusers, open_clip_torch, ftfy, wcwidth and importlib_metadata wheels
in .whl/ (the device image lacks them; the device tool's README says how to download them).

``prepare`` renders the training sets in parallel (the same images as the CPU stages' caches;
their SHA-256 are printed to compare). ``unet`` is the unet stage (train_unet.train), ``clip``
the clip-image stage (train_clip_image.train, on a copy of the shipped clip/) and ``decoder``
the decoder stage (train_decoder.train, continuing the shipped vae/), each in a work folder of
its own. ``export`` writes, per candidate, the weights that changed as fp16 safetensors shards
of at most 15 MB (a UNet's EMA; an image tower's ``visual.*`` tensors, the text tower being
locked; the whole 1.2M-parameter VAE) plus a JSON of its metrics (or, if it was stopped early,
what its checkpoint holds). ``assemble`` rebuilds a StableDiffusionPipeline folder (with the
shipped vae/ and text side), a clip/ folder (with the shipped text tower) or a vae/ folder
(refusing one whose encoder side changed) for benchmarks here and, once chosen, for shipping.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from bench.miniworld import train_clip_image, train_decoder, train_unet
from bench.miniworld.data import TRAINING_MIX, render_dataset, render_style_pairs
from bench.core.paths import MINIWORLD_DIR

SHARD_BYTES = 15_000_000  # files coming back from the device may not exceed 16 MiB


def rendered_sets() -> list[tuple[int, int, dict]]:
    """(size, seed, options) of every set the two stages train on (the UNet's is the first)."""
    sets = [(train_unet.N_TRAIN, 0, TRAINING_MIX)] + train_clip_image.training_sets(train_clip_image.N_TRAIN)
    return list({json.dumps(s, sort_keys=True): s for s in sets}.values())


def prepare(work: Path, workers: int) -> None:
    for n, seed, options in rendered_sets():
        data = render_dataset(n, seed, cache_dir=work / "renders", progress=False, workers=workers, **options)
        digest = hashlib.sha256(np.ascontiguousarray(data.images).tobytes()).hexdigest()
        print(json.dumps({"renders": n, "seed": seed, "options": options, "images_sha256": digest}))
    n, seed = train_clip_image.style_pair_count(train_clip_image.N_TRAIN), train_clip_image.EXTRA_SEED
    styled, _ = render_style_pairs(n, seed, cache_dir=work / "renders", progress=False, workers=workers)
    digest = hashlib.sha256(np.ascontiguousarray(styled.images).tobytes()).hexdigest()
    print(json.dumps({"style pairs": n, "seed": seed, "styled_sha256": digest}))


def _run_folder(work: Path, name: str, threads: int) -> Path:
    """A candidate's folder, its checkpoints/ seeing the rendered sets through links."""
    torch.set_num_threads(threads)
    ckpt_dir = work / name / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    for cached in (work / "renders").iterdir():
        link = ckpt_dir / cached.name
        if not link.exists():
            link.symlink_to(cached.resolve())
    return work / name


def train_unet_candidate(work: Path, name: str, size: str, batch: int, lr: float, time_budget: float,
                         device: str, threads: int) -> None:
    run = _run_folder(work, name, threads)
    metrics = train_unet.train(run / "pipeline", run / "checkpoints", MINIWORLD_DIR, size=size, batch=batch,
                               lr=lr, time_budget=time_budget, device=device, progress=False)
    print(json.dumps({k: v for k, v in metrics.items() if k not in ("history", "base_metrics")}))


def train_clip_candidate(work: Path, name: str, size: str, batch: int, lr: float | None,
                         time_budget: float, device: str, threads: int) -> None:
    run = _run_folder(work, name, threads)
    shutil.copytree(MINIWORLD_DIR / "clip", run / "clip", dirs_exist_ok=True)
    metrics = train_clip_image.train(run / "clip", run / "checkpoints", run, size=size, batch=batch, lr=lr,
                                     time_budget=time_budget, device=device, progress=False)
    print(json.dumps({k: v for k, v in metrics.items() if k != "replaced_run"}))


def train_decoder_candidate(work: Path, name: str, size: str | None, batch: int, lr: float | None,
                            time_budget: float, device: str, threads: int) -> None:
    """The decoder stage on a copy of the shipped vae/, continuing the shipped decoder
    (``refine_shipped``)."""
    run = _run_folder(work, name, threads)
    shutil.copytree(MINIWORLD_DIR / "vae", run / "vae", dirs_exist_ok=True)
    metrics = train_decoder.train(run / "vae", run / "checkpoints", run, batch=batch, lr=lr,
                                  time_budget=time_budget, device=device, progress=False,
                                  refine_shipped=True)
    print(json.dumps({k: v for k, v in metrics.items() if k != "replaced_run"}))


def _write_shards(state: dict, out: Path, name: str) -> int:
    from safetensors.torch import save_file
    shards, current, size = [], {}, 0
    for key, tensor in state.items():
        tensor = tensor.to(torch.float16).contiguous() if tensor.is_floating_point() else tensor.contiguous()
        nbytes = tensor.numel() * tensor.element_size()
        if current and size + nbytes > SHARD_BYTES:
            shards.append(current)
            current, size = {}, 0
        current[key] = tensor
        size += nbytes
    shards.append(current)
    for i, shard in enumerate(shards):
        save_file(shard, str(out / f"{name}_fp16_{i}.safetensors"))
    return len(shards)


def _read_shards(folder: Path, name: str, count: int) -> dict:
    from safetensors.torch import load_file
    state = {}
    for i in range(count):
        state.update(load_file(str(folder / f"{name}_fp16_{i}.safetensors")))
    return {k: v.to(torch.float32) if v.is_floating_point() else v for k, v in state.items()}


def export(work: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for run in sorted(p for p in work.iterdir() if (p / "checkpoints").is_dir()):
        unet_ckpt, clip_ckpt = run / "checkpoints" / "unet.pt", run / "checkpoints" / "clip_image.pt"
        if unet_ckpt.is_file():
            payload = torch.load(unet_ckpt, map_location="cpu", weights_only=True)
            state, kind = payload["ema"], "unet"
            metrics_path = run / "pipeline" / "metrics.json"
            history = json.loads((run / "checkpoints" / "unet_history.json").read_text())
        elif (run / "checkpoints" / "decoder.pt").is_file():
            payload = torch.load(run / "checkpoints" / "decoder.pt", map_location="cpu", weights_only=True)
            state, kind, history = payload["model"], "decoder", None
            metrics_path = run / "vae" / "decoder_metrics.json"
        elif clip_ckpt.is_file():
            payload = torch.load(clip_ckpt, map_location="cpu", weights_only=True)
            state = {k: v for k, v in payload["model"].items() if k.startswith("visual.")}
            kind, metrics_path, history = "clip-image", run / "clip" / "image_finetune_metrics.json", None
        else:
            continue
        # A stage writes its metrics last: their presence means the run reached its end.
        finished = metrics_path.is_file()
        summary = {"name": run.name, "kind": kind, "checkpoint_step": int(payload["step"]),
                   "shards": _write_shards(state, out, run.name), "finished": finished,
                   "metrics": json.loads(metrics_path.read_text()) if finished else None, "history": history}
        (out / f"{run.name}_metrics.json").write_text(json.dumps(summary, indent=1))
        print(f"{run.name}: {kind} step {summary['checkpoint_step']}, {summary['shards']} shard(s), "
              f"finished={finished}")


def assemble(shards: Path, name: str, out: Path, root: Path = MINIWORLD_DIR) -> None:
    """Shards + the rest from ``root`` (the shipped folders) -> a pipeline folder (UNet) or a
    clip/ folder (image tower), each with its metrics."""
    summary = json.loads((shards / f"{name}_metrics.json").read_text())
    if not summary["finished"]:
        raise SystemExit(f"{name}: the run stopped at step {summary['checkpoint_step']} before the end "
                         "of its schedule; continue it instead of shipping it")
    state = _read_shards(shards, name, summary["shards"])
    assemblers = {"unet": _assemble_pipeline, "clip-image": _assemble_clip, "decoder": _assemble_decoder}
    assemblers[summary["kind"]](state, summary["metrics"], out, root)


def _assemble_pipeline(state: dict, metrics: dict, out: Path, root: Path) -> None:
    from diffusers import AutoencoderKL
    with tempfile.TemporaryDirectory() as tokenizer_dir:  # the pipeline folder keeps its own copy
        text_encoder, tokenizer = train_unet.frozen_text_side(root, Path(tokenizer_dir))
    unet = train_unet.build_unet(text_encoder.config.hidden_size, metrics["unet_config"])
    unet.load_state_dict(state, strict=True)
    vae = AutoencoderKL.from_pretrained(str(root / "vae"), torch_dtype=torch.float32).eval()
    files = train_unet.assemble_pipeline(out, unet.eval(), vae, text_encoder, tokenizer)
    metrics["file_bytes"] = {str(f.relative_to(out)): f.stat().st_size for f in files if f.name != "metrics.json"}
    metrics["returned_as"] = "fp16 EMA shards from a GPU round (bench/miniworld/gpu_round.py)"
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(f"{out}: {metrics['parameters']} parameters, {metrics['steps']} steps")


def _assemble_clip(state: dict, metrics: dict, out: Path, root: Path) -> None:
    from bench.miniworld.clip_model import CONFIG_FILE, build_clip, load_clip, save_clip
    config = json.loads((root / "clip" / CONFIG_FILE).read_text())
    name = config.pop("model_name")
    config["vision_cfg"] = metrics["vision_cfg"]
    model = build_clip(config, name)
    text_side = {k: v for k, v in load_clip(root / "clip").state_dict().items() if not k.startswith("visual.")}
    model.load_state_dict({**text_side, **state}, strict=True)
    save_clip(model, out, config)
    metrics["returned_as"] = "fp16 image-tower shards from a GPU round (bench/miniworld/gpu_round.py)"
    (out / "image_finetune_metrics.json").write_text(json.dumps(metrics, indent=2))
    print(f"{out}: image tower {metrics['vision_cfg']}, {metrics['steps']} steps")


def _assemble_decoder(state: dict, metrics: dict, out: Path, root: Path) -> None:
    """A vae/ folder with the returned decoder; its encoder side must be the shipped one (else the
    UNet's latents would no longer be what it decodes)."""
    from diffusers import AutoencoderKL
    from bench.miniworld.weights import strip_local_paths
    vae = AutoencoderKL.from_pretrained(str(root / "vae"), torch_dtype=torch.float32)
    shipped = vae.state_dict()
    changed = [k for k in state if k.startswith(("encoder.", "quant_conv.")) and not torch.equal(state[k], shipped[k])]
    if changed:
        raise SystemExit(f"decoder round changed the encoder side ({changed[0]}, ...): not assembled")
    vae.load_state_dict(state, strict=True)
    shutil.copytree(root / "vae", out, dirs_exist_ok=True)  # keeps the VAE stage's metrics.json
    vae.to(torch.float16).save_pretrained(str(out), safe_serialization=True)
    strip_local_paths(out)
    metrics["returned_as"] = "fp16 VAE shards from a GPU round (bench/miniworld/gpu_round.py)"
    (out / "decoder_metrics.json").write_text(json.dumps(metrics, indent=2))
    print(f"{out}: decoder {metrics['steps']} steps, held-out PSNR {metrics['held_out_psnr_db_after']}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("prepare")
    a.add_argument("--work", type=Path, required=True)
    a.add_argument("--workers", type=int, default=os.cpu_count())
    for command, sizes, batch, lr in (("unet", train_unet.UNET_WIDTHS, train_unet.BATCH, train_unet.LR),
                                      ("clip", train_clip_image.VISION_SIZES, train_clip_image.BATCH, None),
                                      ("decoder", None, train_decoder.BATCH, None)):
        t = sub.add_parser(command)
        t.add_argument("--work", type=Path, required=True)
        t.add_argument("--name", required=True)
        if sizes:
            t.add_argument("--size", choices=sorted(sizes), required=True)
        t.add_argument("--batch", type=int, default=batch)
        t.add_argument("--lr", type=float, default=lr, help="default: the stage's")
        t.add_argument("--time-budget", type=float, required=True)
        t.add_argument("--device", default="cuda")
        t.add_argument("--threads", type=int, default=4)
    e = sub.add_parser("export")
    e.add_argument("--work", type=Path, required=True)
    e.add_argument("--out", type=Path, required=True)
    s = sub.add_parser("assemble")
    s.add_argument("--shards", type=Path, required=True)
    s.add_argument("--name", required=True)
    s.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    if args.command == "prepare":
        prepare(args.work, args.workers)
    elif args.command in ("unet", "clip", "decoder"):
        trainer = {"unet": train_unet_candidate, "clip": train_clip_candidate,
                   "decoder": train_decoder_candidate}[args.command]
        trainer(args.work, args.name, getattr(args, "size", None), args.batch, args.lr, args.time_budget,
                args.device, args.threads)
    elif args.command == "export":
        export(args.work, args.out)
    else:
        assemble(args.shards, args.name, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
