"""``eraselab erase``: erase one concept from a model and save the edit as a delta.

    eraselab erase --method fewshot-te --concept snoopy --seed 0 --out runs/fs-snoopy
    eraselab erase --model runwayml/stable-diffusion-v1-5 --catalog paper --method esd-x \\
        --concept "Van Gogh" --set steps=200 --seed 0 --out runs/esd-vg --json

Without ``--model`` the shipped mini-world pipeline is used. Prints the seconds spent, the
parameters changed and where the delta is (``--json`` for one JSON object on stdout).
``--export-pipeline DIR`` also writes the full edited pipeline (``save_pretrained``); an
inference-time method (its edit changes sampling, not weights) refuses it before any work.
Several ``--concept`` flags erase the concepts one after another (sequential erasure); the delta
covers all of them. Nothing is written when erasure fails.
"""

from __future__ import annotations

import json
import sys


def add_parser(subparsers):
    p = subparsers.add_parser("erase", help="erase a concept from a model; save the edit as a delta",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="pipeline folder or hub id (default: the shipped mini world)")
    p.add_argument("--method", required=True, help="erasure method (eraselab ls methods)")
    p.add_argument("--variant", help="method variant: a parameter subset (e.g. te-all, "
                   "te-mlp+te-final-attn, xattn; methods/subsets.py) or a preset (sld: strong)")
    p.add_argument("--concept", required=True, action="append",
                   help="concept name from the catalog; repeat for sequential erasure")
    p.add_argument("--catalog", default="miniworld", help="catalog name or path (default miniworld)")
    p.add_argument("--images", help="folder of few-shot images (default: the catalog's source)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a hyperparameter (repeatable), e.g. --set lr=1e-4")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--out", required=True, help="folder for delta.safetensors + edit.json")
    p.add_argument("--export-pipeline", metavar="DIR", help="also save the full edited pipeline")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(handler=run)
    return p


def run(args) -> int:
    from bench.core.files import os_error

    try:
        return _run(args)
    except OSError as exc:  # a full disk, a read-only or unwritable --out: one line
        raise os_error(exc.filename or args.out, exc, "I/O failed") from None


def _run(args) -> int:
    from pathlib import Path

    import torch

    from bench.catalog import load_catalog
    from bench.pipeline_io import default_model, load_pipeline
    from methods import METHODS
    from bench.core.errors import EraselabError
    from methods.delta import check_out_dir
    from methods.erase import erase, resolve_method_config
    from methods.config import parse_set_args

    method_cls = METHODS.get(args.method)  # unknown method: fail before loading anything
    if args.export_pipeline and method_cls.inference_time:
        from methods.guidance import not_exportable
        raise not_exportable(args.method)
    overrides = parse_set_args(args.overrides)
    # keys, types and variant do not depend on the model family: check them before loading
    resolve_method_config(method_cls, "sd", args.variant, overrides)
    if args.images and not method_cls.needs_images:
        raise EraselabError(f"{args.method}: uses no few-shot images; drop --images")
    if args.images:
        from bench.fewshot import check_image_folder
        check_image_folder(args.images)  # every image readable, before the model loads
    catalog = load_catalog(args.catalog)
    concepts = [catalog[name] for name in args.concept]
    check_out_dir(args.out)
    if args.export_pipeline:
        check_out_dir(args.export_pipeline)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    pipe = load_pipeline(args.model or default_model(), device=device, progress=not args.no_progress)
    result = None
    checkpoints = []  # (folder name, EditResult): written under OUT/checkpoints/ after the edit
    for i, concept in enumerate(concepts):
        last = i == len(concepts) - 1
        result = erase(result.pipeline if result else pipe, args.method, concept,
                       variant=args.variant, overrides=overrides,
                       images_dir=args.images, seed=args.seed, catalog=catalog,
                       progress=not args.no_progress, out_dir=args.out if last else None,
                       on_checkpoint=lambda tag, r, c=concept: checkpoints.append((f"{c.name}-{tag}", r)))
    for name, checkpoint in checkpoints:
        checkpoint.save(Path(args.out) / "checkpoints" / name.replace(" ", "_"))
    if args.export_pipeline:
        result.pipeline.save_pretrained(args.export_pipeline)
    seconds = sum(e["seconds"] for e in result.record["edits"])
    summary = {"method": args.method, "concepts": [c.name for c in concepts],
               "seconds": round(seconds, 3), "params_changed": result.params_changed,
               "tensors_changed": result.record["tensors_changed"],
               "peak_memory_mb": result.record["peak_memory_mb"],
               "delta": str(Path(args.out)), "pipeline": args.export_pipeline,
               "checkpoints": [str(Path(args.out) / "checkpoints" / n.replace(" ", "_")) for n, _ in checkpoints]}
    if args.json:
        sys.stdout.write(json.dumps(summary) + "\n")
    else:
        sys.stdout.write(f"erased {', '.join(summary['concepts'])} with {args.method} in "
                         f"{summary['seconds']:.2f} s; {summary['params_changed']} parameters "
                         f"changed in {summary['tensors_changed']} tensors; delta: {args.out}\n")
        if args.export_pipeline:
            sys.stdout.write(f"edited pipeline: {args.export_pipeline}\n")
        if checkpoints:
            sys.stdout.write(f"{len(checkpoints)} intermediate edits (load_edit reads each): "
                             f"{Path(args.out) / 'checkpoints'}/\n")
    return 0
