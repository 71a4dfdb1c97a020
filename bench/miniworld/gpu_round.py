"""Train UNet candidates on a lent GPU and bring them back as files small enough to return.

A lent GPU gives one short session (minutes, files of at most 16 MiB coming back), so a round is
three steps, each a subcommand:

    # on the GPU machine, from the repository root:
    python3 -m bench.miniworld.gpu_round prepare --work /tmp/w --workers 14
    python3 -m bench.miniworld.gpu_round train --work /tmp/w --name wide --size wide \
        --batch 256 --lr 8e-4 --time-budget 420 &      # several candidates may share the GPU
    python3 -m bench.miniworld.gpu_round export --work /tmp/w --out "$OUT"
    # back here:
    python3 -m bench.miniworld.gpu_round assemble --shards DIR --name wide --out runs/unet-wide

bench/miniworld/gpu_round.sh is the whole device command (three widths side by side); it expects
diffusers, open_clip_torch, ftfy, wcwidth and importlib_metadata wheels in .whl/ (the device
image lacks them; see the device tool's README for downloading wheels for it).

``prepare`` renders the 40k training set in parallel (the same images as the CPU stage's cache;
its SHA-256 is printed to compare). ``train`` is the unet stage (train_unet.train) in a work
folder of its own. ``export`` writes each candidate's EMA weights as fp16 safetensors shards of
at most 15 MB plus a JSON of its metrics (or, if it was stopped early, its history).
``assemble`` turns shards back into a StableDiffusionPipeline folder with the shipped vae/ and
text side, ready for benchmarks/mini_sd_selection.py and, once chosen, for shipping.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

from bench.miniworld.data import TRAINING_MIX, render_cache_key, render_dataset
from bench.miniworld import train_unet
from bench.paths import MINIWORLD_DIR

SHARD_BYTES = 15_000_000  # files coming back from the device may not exceed 16 MiB


def prepare(work: Path, workers: int) -> None:
    cache = work / "renders"
    data = render_dataset(train_unet.N_TRAIN, 0, cache_dir=cache, progress=False, workers=workers,
                          **TRAINING_MIX)
    digest = hashlib.sha256(np.ascontiguousarray(data.images).tobytes()).hexdigest()
    print(json.dumps({"renders": len(data), "images_sha256": digest}))


def train(work: Path, name: str, size: str, batch: int, lr: float, time_budget: float,
          device: str, threads: int) -> None:
    torch.set_num_threads(threads)
    ckpt_dir = work / name / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    key = render_cache_key(train_unet.N_TRAIN, 0, **TRAINING_MIX)
    for suffix in (".npy", ".json"):  # share the one rendered set
        link = ckpt_dir / f"{key}{suffix}"
        if not link.exists():
            link.symlink_to((work / "renders" / f"{key}{suffix}").resolve())
    metrics = train_unet.train(work / name / "pipeline", ckpt_dir, MINIWORLD_DIR, size=size, batch=batch, lr=lr,
                               time_budget=time_budget, device=device, progress=False)
    print(json.dumps({k: v for k, v in metrics.items() if k not in ("history", "base_metrics")}))


def export(work: Path, out: Path) -> None:
    from safetensors.torch import save_file
    out.mkdir(parents=True, exist_ok=True)
    for run in sorted(p for p in work.iterdir() if (p / "checkpoints" / "unet.pt").is_file()):
        payload = torch.load(run / "checkpoints" / "unet.pt", map_location="cpu", weights_only=True)
        state = {k: v.to(torch.float16).contiguous() for k, v in payload["ema"].items()}
        shards, current, size = [], {}, 0
        for key_name, tensor in state.items():
            nbytes = tensor.numel() * tensor.element_size()
            if current and size + nbytes > SHARD_BYTES:
                shards.append(current)
                current, size = {}, 0
            current[key_name] = tensor
            size += nbytes
        shards.append(current)
        for i, shard in enumerate(shards):
            save_file(shard, str(out / f"{run.name}_ema_fp16_{i}.safetensors"))
        metrics_path = run / "pipeline" / "metrics.json"
        summary = {"name": run.name, "checkpoint_step": int(payload["step"]), "shards": len(shards),
                   "finished": metrics_path.is_file(),
                   "metrics": json.loads(metrics_path.read_text()) if metrics_path.is_file() else None,
                   "history": json.loads((run / "checkpoints" / "unet_history.json").read_text())}
        (out / f"{run.name}_metrics.json").write_text(json.dumps(summary, indent=1))
        print(f"{run.name}: step {summary['checkpoint_step']}, {len(shards)} shard(s), "
              f"finished={summary['finished']}, last {summary['history'][-1]}")


def assemble(shards: Path, name: str, out: Path, root: Path = MINIWORLD_DIR) -> None:
    """Shards + the vae/ and text side of ``root`` (the shipped ones) -> a pipeline folder with
    metrics.json."""
    import tempfile
    from safetensors.torch import load_file
    summary = json.loads((shards / f"{name}_metrics.json").read_text())
    if not summary["finished"]:
        raise SystemExit(f"{name}: the run stopped at step {summary['checkpoint_step']} before the end "
                         "of its schedule; continue it with --init-from instead of shipping it")
    metrics = summary["metrics"]
    state = {}
    for i in range(summary["shards"]):
        state.update(load_file(str(shards / f"{name}_ema_fp16_{i}.safetensors")))
    from diffusers import AutoencoderKL
    with tempfile.TemporaryDirectory() as tokenizer_dir:  # the pipeline folder keeps its own copy
        text_encoder, tokenizer = train_unet.frozen_text_side(root, Path(tokenizer_dir))
    unet = train_unet.build_unet(text_encoder.config.hidden_size, metrics["unet_config"])
    unet.load_state_dict({k: v.to(torch.float32) for k, v in state.items()}, strict=True)
    vae = AutoencoderKL.from_pretrained(str(root / "vae"), torch_dtype=torch.float32).eval()
    files = train_unet.assemble_pipeline(out, unet.eval(), vae, text_encoder, tokenizer)
    metrics["file_bytes"] = {str(f.relative_to(out)): f.stat().st_size for f in files if f.name != "metrics.json"}
    metrics["returned_as"] = "fp16 EMA shards from a GPU round (bench/miniworld/gpu_round.py)"
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(f"{out}: {metrics['parameters']} parameters, {metrics['steps']} steps")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("prepare")
    a.add_argument("--work", type=Path, required=True)
    a.add_argument("--workers", type=int, default=os.cpu_count())
    t = sub.add_parser("train")
    t.add_argument("--work", type=Path, required=True)
    t.add_argument("--name", required=True)
    t.add_argument("--size", choices=sorted(train_unet.UNET_WIDTHS), required=True)
    t.add_argument("--batch", type=int, default=train_unet.BATCH)
    t.add_argument("--lr", type=float, default=train_unet.LR)
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
    elif args.command == "train":
        train(args.work, args.name, args.size, args.batch, args.lr, args.time_budget, args.device, args.threads)
    elif args.command == "export":
        export(args.work, args.out)
    else:
        assemble(args.shards, args.name, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
