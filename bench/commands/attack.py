"""``eraselab attack``: run one probe against a model (or a saved edit of it) and save what it found.

    eraselab attack --probe soft-prompt --concept church --prompt "a photo of a church" \\
        --edit runs/esd-church --seed 0 --out runs/soft-church
    eraselab attack --probe surface --concept church          # a prompt probe: prints its prompts

Without ``--model`` the shipped mini-world pipeline is used; ``--edit`` loads a saved edit
(``eraselab erase --out``) onto it first. An optimised attack writes ``found.json`` (the prompt to
draw, ``*`` marking each found vector, its objective before and after, its config) and, for an
embedding attack, ``vectors.safetensors``; replay them with attacks.placeholders.Placeholders.
Nothing is written when the attack fails.
"""

from __future__ import annotations

import json
import sys


def add_parser(subparsers):
    p = subparsers.add_parser("attack", help="run one attack or probe against a model or an edit",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--probe", required=True, help="attack or probe (eraselab ls attacks)")
    p.add_argument("--concept", required=True, help="concept name from the catalog")
    p.add_argument("--catalog", default="miniworld", help="catalog name or path (default miniworld)")
    p.add_argument("--prompt", help="the base prompt an optimised attack starts from "
                                    "(default: the concept's first template)")
    p.add_argument("--model", help="pipeline folder or hub id (default: the shipped mini world)")
    p.add_argument("--edit", help="a saved edit's folder to attack (default: the unedited model)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a budget key (repeatable), e.g. --set steps=100")
    p.add_argument("--n", type=int, default=8, help="prompt probes: how many prompts (default 8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="folder for found.json (+ vectors.safetensors); optimised attacks")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(handler=run)
    return p


def run(args) -> int:
    from bench.catalog import load_catalog
    from bench.core.errors import EraselabError
    from attacks.base import get_probe, resolve_probe_config
    from methods.config import parse_set_args
    from methods.defaults import FAMILIES

    cls = get_probe(args.probe)  # unknown probe: fail before loading anything
    catalog = load_catalog(args.catalog)
    concept = catalog[args.concept]
    if cls.kind == "prompt":
        if args.overrides or args.out or args.edit:
            raise EraselabError(f"{args.probe} is a prompt probe: it takes no --set, --edit or --out")
        reason = cls().not_applicable_concept(concept)
        if reason:
            raise EraselabError(f"{args.probe}: {reason}")
        prompts = cls().prompts(concept, catalog, args.n, args.seed)
        sys.stdout.write(json.dumps({"probe": args.probe, "prompts": prompts}) + "\n" if args.json
                         else "".join(p + "\n" for p in prompts))
        return 0
    if not args.out:
        raise EraselabError(f"{args.probe}: --out is required (where found.json goes)")
    overrides = parse_set_args(args.overrides)
    for family in FAMILIES:  # keys and types, before the model loads
        resolve_probe_config(cls, family, overrides)
    from methods.delta import check_out_dir
    check_out_dir(args.out)
    return _attack(args, cls, concept, overrides)


def _attack(args, cls, concept, overrides) -> int:
    import torch

    from attacks.base import original_parts, run_attack
    from bench.core.errors import EraselabError
    from bench.pipeline_io import default_model, load_pipeline
    from methods import METHODS
    from methods.delta import load_edit, read_edit_record

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    pipe = load_pipeline(args.model or default_model(), device=device, progress=not args.no_progress)
    original_text_encoder = original_unet = None
    if args.edit:
        original_text_encoder, original_unet = original_parts(pipe, [cls])
        for entry in read_edit_record(args.edit).get("edits", []):
            name = entry.get("method")
            reason = cls().not_applicable(METHODS.get(name)) if name in METHODS else None
            if reason:
                raise EraselabError(f"{args.edit}: {reason}")
        pipe = load_edit(pipe, args.edit)
    prompt = args.prompt or concept.prompts()[0]
    found = run_attack(pipe, args.probe, concept, prompt, seed=args.seed, overrides=overrides,
                       progress=not args.no_progress, original_text_encoder=original_text_encoder,
                       original_unet=original_unet)
    found.save(args.out, {"probe": args.probe, "kind": cls.kind, "edit": args.edit, "concept": concept.name,
                          "base_prompt": prompt, "seed": args.seed})
    summary = {"probe": args.probe, "prompt": found.prompt, "objective_before": found.objective_before,
               "objective_after": found.objective_after, "seconds": round(found.seconds, 2), "out": args.out}
    sys.stdout.write(json.dumps(summary) + "\n" if args.json else
                     f"{args.probe} on {concept.name}: draw {found.prompt!r}; objective "
                     f"{found.objective_before:.4g} -> {found.objective_after:.4g} in {found.seconds:.1f} s; "
                     f"found: {args.out}\n")
    return 0
