"""Load and check a run directory for the report: ``load_run(Path("runs/mini"))``.

A run directory holds ``results.parquet`` (one row per image), ``manifest.json`` (resolved suite,
versions, timings, per-edit costs) and, optionally, ``aggregates.parquet`` (the runner's per-group
aggregates; the report only takes KID from it, everything else is recomputed from the rows).
Missing inputs are errors, never skipped (STYLE.md: a missing image must not read as perfect
erasure): a missing file, a missing score column or an image_path that does not exist on disk
raises a one-line ``EraselabError`` naming it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from bench.errors import EraselabError

try:  # the runner's schema is the source of truth for column names once it exists
    from bench.runner import schema as _schema  # type: ignore
except ImportError:  # pragma: no cover - depends on the runner being installed
    _schema = None


def _col(name: str, default: str) -> str:
    """The runner schema's spelling of a column (``schema.<NAME>``) or the documented default."""
    return getattr(_schema, name, default) if _schema is not None else default


MODEL = _col("MODEL", "model")
METHOD = _col("METHOD", "method")
VARIANT = _col("VARIANT", "variant")
CONCEPT = _col("CONCEPT", "concept")
PROMPT_SET = _col("PROMPT_SET", "prompt_set")
PROMPT_ID = _col("PROMPT_ID", "prompt_id")
PROMPT = _col("PROMPT", "prompt")
SAMPLE = _col("SAMPLE", "sample")
SEED = _col("SEED", "seed")
IMAGE_PATH = _col("IMAGE_PATH", "image_path")
EDIT_ID = _col("EDIT_ID", "edit_id")
DETECTED = _col("DETECTED", "detected")
CLIP_SCORE = _col("CLIP_SCORE", "clip_score")
MAPPED_TO = _col("MAPPED_TO", "mapped_to")
MAPPING_DIST = _col("MAPPING_DIST", "mapping_dist")
CLIP_IMAGE_COSINE = _col("CLIP_IMAGE_COSINE", "clip_image_cosine")

ORIGINAL = "original"  # the method name of the unedited model, every other method's reference
PROMPT_SETS = ("target", "related", "unrelated")

IDENTITY_COLUMNS = (MODEL, METHOD, VARIANT, CONCEPT, PROMPT_SET, PROMPT_ID, PROMPT, SAMPLE, SEED, IMAGE_PATH)
SCORE_COLUMNS = (DETECTED, CLIP_SCORE, MAPPED_TO, CLIP_IMAGE_COSINE)


@dataclass
class Run:
    """One loaded, checked run: its rows, manifest, optional aggregates and catalog."""

    path: Path
    results: "object"                     # pandas.DataFrame, one row per image
    manifest: dict
    aggregates: "object | None" = None    # pandas.DataFrame or None
    catalog: "object | None" = None       # bench.catalog.Catalog or None
    problems: list[str] = field(default_factory=list)  # non-fatal notes shown in the report

    @property
    def name(self) -> str:
        suite = self.manifest.get("suite") or {}
        if "run" in self.results.columns and self.results["run"].notna().any():
            return str(self.results["run"].dropna().iloc[0])
        return str(suite.get("name") or self.path.name)

    def edits(self) -> dict[str, dict]:
        return dict(self.manifest.get("edits") or {})


def load_run(path: str | Path, *, check_images: bool = True) -> Run:
    """Read and check a run directory; raises EraselabError naming the first missing thing."""
    import pandas as pd

    run_dir = Path(path)
    if not run_dir.is_dir():
        raise EraselabError(f"{run_dir}: run directory not found")
    results_path = run_dir / "results.parquet"
    manifest_path = run_dir / "manifest.json"
    for required in (results_path, manifest_path):
        if not required.is_file():
            raise EraselabError(f"{required}: file not found (is {run_dir} a finished run?)")
    try:
        results = pd.read_parquet(results_path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise EraselabError(f"{results_path}: cannot read parquet ({type(exc).__name__}: {exc})") from None
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise EraselabError(f"{manifest_path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(manifest, dict):
        raise EraselabError(f"{manifest_path}: expected a JSON object")

    for column in IDENTITY_COLUMNS + SCORE_COLUMNS:
        if column not in results.columns:
            raise EraselabError(f"{results_path}: missing column {column!r} "
                                f"(score the run before reporting it)")
    if results.empty:
        raise EraselabError(f"{results_path}: no rows")
    bad_sets = sorted(set(results[PROMPT_SET].astype(str)) - set(PROMPT_SETS))
    if bad_sets:
        raise EraselabError(f"{results_path}: column {PROMPT_SET!r}: unknown prompt set {bad_sets[0]!r}; "
                            f"expected one of {list(PROMPT_SETS)}")
    if ORIGINAL not in set(results[METHOD]):
        raise EraselabError(f"{results_path}: no rows for method {ORIGINAL!r}, the reference every "
                            f"method is compared with")
    for column in (DETECTED, CLIP_SCORE):
        # A NaN detection or CLIP score would silently shrink n; the scorer must have run on every image.
        missing = results[column].isna()
        if missing.any():
            first = results.loc[missing, IMAGE_PATH].iloc[0]
            raise EraselabError(f"{results_path}: column {column!r} is empty for {int(missing.sum())} "
                                f"rows (first: {first})")
    if check_images:
        for rel in results[IMAGE_PATH]:
            if not (run_dir / str(rel)).is_file():
                raise EraselabError(f"{run_dir / str(rel)}: image listed in results.parquet not found")

    results = results.copy()
    results[DETECTED] = results[DETECTED].astype(bool)
    results[VARIANT] = results[VARIANT].fillna("").astype(str)
    aggregates = None
    agg_path = run_dir / "aggregates.parquet"
    if agg_path.is_file():
        try:
            aggregates = pd.read_parquet(agg_path)
        except Exception as exc:
            raise EraselabError(f"{agg_path}: cannot read parquet ({type(exc).__name__}: {exc})") from None
        if "variant" in aggregates:
            aggregates["variant"] = aggregates["variant"].fillna("").astype(str)
    run = Run(path=run_dir, results=results, manifest=manifest, aggregates=aggregates)
    run.catalog = _load_catalog(run)
    return run


def _load_catalog(run: Run):
    """The suite's catalog (a name, a path relative to the run or absolute); None if none is named."""
    from bench.catalog import load_catalog

    ref = (run.manifest.get("suite") or {}).get("catalog")
    if not ref:
        run.problems.append("the manifest names no catalog: recorded parents are not highlighted")
        return None
    if isinstance(ref, dict):  # a suite may embed the catalog's name/path as a mapping
        ref = ref.get("path") or ref.get("name")
    local = run.path / str(ref)
    return load_catalog(local if local.is_file() else str(ref))


def mapping_distribution(value) -> dict[str, float] | None:
    """A row's ``mapping_dist`` as a dict, whatever parquet made of it (struct, map, JSON)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return None
    if isinstance(value, dict):
        return {str(k): float(v) for k, v in value.items() if v is not None}
    try:  # pyarrow map columns arrive as a list of (key, value) pairs
        return {str(k): float(v) for k, v in value if v is not None}
    except (TypeError, ValueError):
        return None
