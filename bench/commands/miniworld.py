"""`eraselab miniworld ...`: render the mini world, look at it, train and evaluate its models.

    eraselab miniworld render --concept snoopy --n 4 --seed 0 --out /tmp/snoopy
    eraselab miniworld sheet --out sheet.png
    eraselab miniworld train clip            # stages: clip clip-image vae decoder unet detector probe judge sae all
    eraselab miniworld train unet --resume   # continue from the stage's last checkpoint
    eraselab miniworld train unet --init-from datasets/miniworld/v1/pipeline/unet --steps 4000
    eraselab miniworld train unet --init-from datasets/miniworld/v1/pipeline/unet \
        --focus benchmarks/results/mini_sd_selection_cpu_mirror_n32.json --steps 2000   # weak concepts more often
    eraselab miniworld train unet --device cuda   # on a lent GPU (the other stages run on the CPU)
    eraselab miniworld train unet --device cuda --size wide --batch 256 --lr 8e-4 --time-budget 450
    eraselab miniworld train clip-image --device cuda --size wide --batch 512 --time-budget 400
    eraselab miniworld eval --json           # quality bars -> model card
    eraselab miniworld eval --only judges,pipeline   # re-measure some sections, keep the rest
"""

from __future__ import annotations

import json
from pathlib import Path

STAGES = ["clip", "clip-image", "vae", "decoder", "unet", "detector", "probe", "judge", "sae"]


def add_parser(sub) -> None:
    p = sub.add_parser("miniworld", help="render, train and evaluate the embedded mini world",
                       description="The procedurally rendered mini world and its models.")
    msub = p.add_subparsers(dest="miniworld_command", metavar="SUBCOMMAND", parser_class=type(p))
    msub.required = True

    r = msub.add_parser("render", help="render images of one concept with captions and boxes")
    r.add_argument("--concept", required=True)
    r.add_argument("--style", default="plain")
    r.add_argument("--n", type=_positive_int, required=True)
    r.add_argument("--seed", type=int, required=True)
    r.add_argument("--out", type=Path, required=True)
    r.set_defaults(handler=_render)

    s = msub.add_parser("sheet", help="one contact sheet of every concept and style")
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(handler=_sheet)

    t = msub.add_parser("train", help="train a mini-world model stage (or all, in order)")
    t.add_argument("stage", choices=STAGES + ["all"])
    t.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    t.add_argument("--steps", type=_positive_int, default=None,
                   help="override the stage's step/epoch count (for smoke runs)")
    t.add_argument("--out", type=Path, default=None,
                   help="write to this folder instead of the shipped datasets/miniworld/v1/")
    t.add_argument("--init-from", type=Path, default=None, metavar="UNET_DIR",
                   help="unet stage: start from a trained UNet folder (e.g. datasets/miniworld/v1/"
                        "pipeline/unet) with a fresh optimiser, where no checkpoint exists")
    t.add_argument("--focus", type=Path, default=None, metavar="JSON",
                   help="unet stage: sampling weights per concept/style ('focus_weights', as "
                        "benchmarks/mini_sd_selection.py writes)")
    t.add_argument("--device", default=None,
                   help="unet, clip-image, decoder stages: train on this torch device (cuda on a "
                        "lent GPU; default cpu)")
    t.add_argument("--size", default=None, choices=["small", "medium", "wide"],
                   help="unet stage: UNet width (default wide, the shipped recipe's); clip-image "
                        "stage: image tower size (small, the shipped tower, is fine-tuned; a larger "
                        "one is trained anew against the locked text tower)")
    t.add_argument("--batch", type=_positive_int, default=None,
                   help="clip, clip-image, decoder, unet stages: batch size (default: the stage's recipe)")
    t.add_argument("--lr", type=_positive_float, default=None,
                   help="unet, clip-image, decoder stages: peak learning rate")
    t.add_argument("--time-budget", type=_positive_float, default=None, metavar="SECONDS",
                   help="unet, clip-image, decoder stages: choose --steps from the speed of the "
                        "first steps so that training takes about this long (the count is recorded)")
    t.add_argument("--refine-shipped", action="store_true",
                   help="decoder stage: continue the shipped decoder (vae/ as found) instead of "
                        "restarting from the VAE stage's checkpoint")
    t.add_argument("--no-progress", action="store_true")
    t.set_defaults(handler=_train)

    e = msub.add_parser("eval", help="measure the quality bars and write the model card")
    e.add_argument("--json", action="store_true")
    e.add_argument("--n-per-concept", type=_positive_int, default=64)
    e.add_argument("--out", type=Path, default=None, help="model card folder (default: the shipped one)")
    e.add_argument("--only", default=None, metavar="SECTIONS",
                   help="measure only these comma-separated sections (clip, probe, detector, judges, "
                        "pipeline, sae) and keep the others from the recorded eval.json")
    e.set_defaults(handler=_eval)


def _positive_float(text: str) -> float:
    import argparse
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def _positive_int(text: str) -> int:
    import argparse
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _render(args) -> int:
    from bench.catalog import load_catalog
    from bench.miniworld.render import write_renders
    catalog = load_catalog("miniworld")
    concept = catalog[args.concept]  # one-line error with suggestions for unknown names
    style = args.style
    if concept.is_style:  # rendering a style alone: its own name is the style
        style = concept.name
    records = write_renders(concept.name, style, args.n, args.seed, args.out)
    print(f"wrote {len(records)} images and captions.jsonl to {args.out}")
    return 0


def _sheet(args) -> int:
    from bench.miniworld.sheet import make_contact_sheet
    make_contact_sheet(args.out, seed=args.seed)
    print(f"contact sheet: {args.out}")
    return 0


def _train(args) -> int:
    from bench.miniworld import training
    stages = STAGES if args.stage == "all" else [args.stage]
    for stage in stages:
        metrics = training.run_stage(stage, resume=args.resume, steps=args.steps, out=args.out,
                                     progress=not args.no_progress, init_from=args.init_from,
                                     device=args.device, focus=args.focus, size=args.size,
                                     batch=args.batch, lr=args.lr, time_budget=args.time_budget,
                                     refine_shipped=args.refine_shipped or None)
        print(f"{stage}: {json.dumps(metrics)}")
    return 0


def _eval(args) -> int:
    from bench.miniworld.evaluate import evaluate_and_write_card
    only = [s.strip() for s in args.only.split(",") if s.strip()] if args.only else None
    report = evaluate_and_write_card(n_per_concept=args.n_per_concept, out=args.out, only=only)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(report["summary"])
    return 0
