"""``eraselab tune``: choose a method's hyperparameters on the held-apart tuning split (bench/tuning.py).

    eraselab tune --method fewshot-te --grid steps=20,40,80 --grid lr=3e-5,1e-4,3e-4
    eraselab tune --method fewshot-te --variant te-mlp --set steps=40 --grid lr=1e-4,3e-4 --out t.json
    eraselab tune --method fewshot-te --variant te-layer0-mlp --variant te-layer0-attn --grid lr=1e-4,3e-4 --out dir/

Every combination of the ``--grid`` values erases each tuning concept and is judged on the split;
the rule (bench/tuning.py) picks one. Prints each setting as it finishes and the choice; the
result file (default runs/tune/<method>[.<variant>].json) is rewritten after every setting, and a
rerun resumes from it. Several ``--variant``s are tuned one after another on the same grid, the
original model measured once; ``--out`` is then a folder holding ``<variant>.json`` per variant.
"""

from __future__ import annotations

from pathlib import Path


def add_parser(subparsers):
    p = subparsers.add_parser("tune", help="choose hyperparameters on the held-apart tuning split",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--method", required=True, help="erasure method (eraselab ls methods)")
    p.add_argument("--variant", action="append", default=[],
                   help="method variant, e.g. a parameter subset (te-mlp, xattn); repeatable")
    p.add_argument("--grid", action="append", required=True, metavar="KEY=V1,V2,...",
                   help="values to try (repeatable; the first key breaks ties first)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="a fixed override for every setting (repeatable)")
    p.add_argument("--model", help="pipeline folder (default: the shipped mini world)")
    p.add_argument("--out", help="result file, or with several variants a folder "
                                 "(default: runs/tune/<method>[.<variant>].json)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(handler=run)
    return p


def run(args) -> int:
    from bench.tuning import check_grid, number, parse_grid, tune
    from methods.config import parse_set_args

    grid = parse_grid(args.grid)
    base = {k: number(v) for k, v in parse_set_args(args.overrides).items()}
    variants = list(dict.fromkeys(args.variant)) or [None]
    for variant in variants:  # every variant's bad key fails before any model loads
        check_grid(args.method, grid, variant, base)
    import torch
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    original = None
    for variant in variants:
        out = args.out
        if out and len(variants) > 1:
            out = str(Path(out) / f"{variant.replace('/', '_')}.json")
        if len(variants) > 1:
            print(f"variant {variant}:", flush=True)
        result = tune(args.method, grid, variant=variant, base=base, model=args.model, out=out,
                      device=device, progress=not args.no_progress, original=original,
                      log=lambda line: print(line, flush=True))
        original = result["original"]
    return 0
