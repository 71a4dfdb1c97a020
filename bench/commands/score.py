"""``eraselab score IMAGES_DIR --prompts FILE``: score a folder of your own images.

    eraselab score out/images --prompts out/prompts.jsonl --scorers clip-score,mapping --json

FILE maps each image file (relative to IMAGES_DIR) to the prompt it was generated from and,
optionally, the catalog concept it shows. Accepted formats, by suffix:
  .jsonl  one object per line: {"image": "0001.png", "prompt": "a photo of a church", "concept": "church"}
  .csv    a header with columns image,prompt[,concept]
  .txt    one line per image: FILE<TAB>PROMPT[<TAB>CONCEPT]
Every listed image is scored; a missing or unreadable one is an error, never skipped. Without
--scorers, clip-score runs plus the detectors the catalog names for the listed concepts.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from bench.errors import EraselabError, UsageError

FORMATS = (".jsonl", ".csv", ".txt")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "score", help="score a folder of images (CLIP score, detectors, mapping)",
        description="Score a folder of images with eraselab's scorers. --prompts FILE maps image file "
                    "-> prompt [-> concept]: .jsonl ({\"image\", \"prompt\", \"concept\"} per line), "
                    ".csv (header image,prompt[,concept]) or .txt (FILE<TAB>PROMPT[<TAB>CONCEPT]).")
    p.add_argument("images_dir", metavar="IMAGES_DIR", help="folder holding the images")
    p.add_argument("--prompts", required=True, metavar="FILE",
                   help="image -> prompt [-> concept] mapping: .jsonl, .csv or .txt (see description)")
    p.add_argument("--catalog", default="miniworld", metavar="NAME",
                   help="concept catalog the concept column refers to (default: miniworld)")
    p.add_argument("--scorers", default=None, metavar="A,B",
                   help="comma-separated scorer names (`eraselab ls detectors`); default: clip-score "
                        "plus the listed concepts' detectors")
    p.add_argument("--json", action="store_true", help="print one JSON object per image instead of a table")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: cpu)")
    p.add_argument("--size", type=int, default=None, metavar="PX",
                   help="require every image to be PX x PX (e.g. 64 for the mini world)")
    p.add_argument("--clip-model", default=None, help="open_clip model name (default: the mini-world CLIP)")
    p.add_argument("--clip-pretrained", default=None,
                   help="open_clip pretrained tag or weights file, e.g. openai for ViT-L-14")
    p.add_argument("--weights", default=None, help="weights file for yolo / miniworld-yolo")
    p.set_defaults(handler=run)


def read_prompt_file(path: Path) -> list[dict]:
    """Rows {"image", "prompt", "concept"} from a .jsonl, .csv or .txt file."""
    if not path.is_file():
        raise EraselabError(f"{path}: prompts file not found")
    suffix = path.suffix.lower()
    rows: list[dict] = []
    if suffix == ".jsonl":
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise EraselabError(f"{path}: line {number}: not JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise EraselabError(f"{path}: line {number}: expected a JSON object")
            rows.append({**record, "_where": f"{path}: line {number}"})
    elif suffix == ".csv":
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames or not {"image", "prompt"} <= set(reader.fieldnames):
                raise EraselabError(f"{path}: expected a header with columns image,prompt[,concept]")
            for number, record in enumerate(reader, 2):
                rows.append({**record, "_where": f"{path}: line {number}"})
    elif suffix == ".txt":
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) not in (2, 3):
                raise EraselabError(f"{path}: line {number}: expected FILE<TAB>PROMPT[<TAB>CONCEPT]")
            rows.append({"image": parts[0], "prompt": parts[1],
                         "concept": parts[2] if len(parts) == 3 else None, "_where": f"{path}: line {number}"})
    else:
        raise EraselabError(f"{path}: unknown prompts format {suffix!r}; use one of {', '.join(FORMATS)}")
    for row in rows:
        for key in ("image", "prompt"):
            if not isinstance(row.get(key), str) or not row[key].strip():
                raise EraselabError(f"{row['_where']}: missing {key!r}")
        row["concept"] = (row.get("concept") or None)
    if not rows:
        raise EraselabError(f"{path}: no images listed")
    return rows


def build_scorer(name: str, args):
    """Instantiate a scorer, passing only the command-line options its constructor takes."""
    import inspect

    from detectors import SCORERS
    cls = SCORERS.get(name)
    if getattr(cls, "kind", "image") != "image":
        raise UsageError(f"scorer {name!r} compares edited with original images; `eraselab score` "
                         f"runs per-image scorers only")
    options = {"device": args.device, "clip_model": args.clip_model, "clip_pretrained": args.clip_pretrained,
               "weights": args.weights, "catalog": args.catalog}
    accepted = inspect.signature(cls.__init__).parameters
    return cls(**{k: v for k, v in options.items() if k in accepted and v is not None})


def run(args) -> int:
    from bench.catalog import load_catalog
    from detectors import SCORERS
    from detectors.base import load_images

    rows = read_prompt_file(Path(args.prompts))
    folder = Path(args.images_dir)
    if not folder.is_dir():
        raise EraselabError(f"{folder}: images folder not found")
    catalog = load_catalog(args.catalog)
    concepts = [catalog[r["concept"]] if r["concept"] else None for r in rows]
    if args.scorers:
        names = [n.strip() for n in args.scorers.split(",") if n.strip()]
    else:
        names = ["clip-score"] + sorted({c.detector["name"] for c in concepts if c and c.detector})
    for name in names:
        if name not in SCORERS:
            raise UsageError(SCORERS.unknown_message(name))
    scorers = [build_scorer(n, args) for n in names]
    images = load_images([folder / r["image"] for r in rows], size=args.size)
    prompts = [r["prompt"] for r in rows]
    out = [{"image": r["image"], "prompt": r["prompt"], "concept": r["concept"]} for r in rows]
    for scorer in scorers:
        for row, scores in zip(out, scorer.score(images, prompts, concepts)):
            row.update(scores)
    if args.json:
        for row in out:
            print(json.dumps(row, default=str))
    else:
        _print_table(out)
    return 0


def _print_table(rows: list[dict]) -> None:
    # Provenance columns (<scorer>.version/.backend) and whole distributions make the table unreadable.
    keys = [k for k in rows[0] if not k.endswith((".version", ".backend")) and k != "mapping_dist"]
    cells = [[_fmt(row.get(k)) for k in keys] for row in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    print("  ".join(k.ljust(w) for k, w in zip(keys, widths)))
    for c in cells:
        print("  ".join(v.ljust(w) for v, w in zip(c, widths)))
    versions = sorted({f"{k[:-8]}@{v}" for k, v in rows[0].items() if k.endswith(".version")})
    print(f"# scorers: {', '.join(versions)}")


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, list):
        return ",".join(_fmt(v) for v in value[:5]) + ("..." if len(value) > 5 else "")
    return "" if value is None else str(value)
