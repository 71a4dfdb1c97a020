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
    from bench.runner import schema as _schema
except ImportError:  # pragma: no cover - an install without the runner
    _schema = None

# Column names as bench/runner/schema.py spells them (ROW_COLUMNS); tests check they are listed there.
MODEL, METHOD, VARIANT, CONCEPT = "model", "method", "variant", "concept"
PROMPT_SET, PROMPT_ID, PROMPT, SAMPLE, SEED = "prompt_set", "prompt_id", "prompt", "sample", "seed"
SUITE_SEED = "suite_seed"  # optional: several suite seeds = repeats of the whole run
IMAGE_PATH, EDIT_ID = "image_path", "edit_id"
DETECTED, CLIP_SCORE, MAPPED_TO, MAPPING_DIST = "detected", "clip_score", "mapped_to", "mapping_dist"
CLIP_IMAGE_COSINE = "clip_image_cosine"
ROW_COLUMNS = tuple(getattr(_schema, "ROW_COLUMNS", ()))

ORIGINAL = "original"  # the method name of the unedited model, every other method's reference
PROMPT_SETS = tuple(getattr(_schema, "PROMPT_SETS", ("target", "related", "unrelated")))

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
    def suite(self) -> dict:
        """The resolved suite: ``manifest["suite"]`` when it is a mapping, else the runner's
        ``resolved_suite`` (there ``suite`` is the suite's name)."""
        suite = self.manifest.get("suite")
        if isinstance(suite, dict):
            return suite
        resolved = self.manifest.get("resolved_suite")
        out = dict(resolved) if isinstance(resolved, dict) else {}
        if isinstance(suite, str):
            out.setdefault("name", suite)
        return out

    @property
    def suite_name(self) -> str:
        return str(self.suite.get("name") or self.suite.get("suite") or "?")

    @property
    def name(self) -> str:
        if self.manifest.get("run"):
            return str(self.manifest["run"])
        if "run" in self.results.columns and self.results["run"].notna().any():
            return str(self.results["run"].dropna().iloc[0])
        return self.path.name

    def stage_seconds(self) -> dict:
        return dict(self.manifest.get("seconds") or self.manifest.get("seconds_per_stage") or {})

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
    # A missing CLIP score or a missing detection on a target prompt means a scorer did not run:
    # counting around it would shrink n silently. (``detected`` may be null elsewhere: a general
    # prompt names no catalog concept, so no detector applies.)
    for column, rows in ((CLIP_SCORE, results.index == results.index),
                         (DETECTED, results[PROMPT_SET] == "target")):
        missing = results[column].isna() & rows
        if missing.any():
            first = results.loc[missing, IMAGE_PATH].iloc[0]
            raise EraselabError(f"{results_path}: column {column!r} is empty for {int(missing.sum())} "
                                f"rows (first: {first})")
    if check_images:
        for rel in results[IMAGE_PATH]:
            if not (run_dir / str(rel)).is_file():
                raise EraselabError(f"{run_dir / str(rel)}: image listed in results.parquet not found")

    results = results.copy()
    # bool/null -> 1.0/0.0/NaN, so means and bootstrap intervals skip "not applicable" rows.
    results[DETECTED] = [math.nan if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))
                         else float(bool(v)) for v in results[DETECTED]]
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


def finished_manifest(run_dir) -> dict:
    """A run folder's manifest.json, which the runner writes last: its absence means the run is
    unfinished (or the folder is no run). One-line errors."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise EraselabError(f"{run_dir}: run directory not found")
    path = run_dir / "manifest.json"
    if not path.is_file():
        raise EraselabError(f"{run_dir}: not a finished run (no manifest.json; `eraselab run` writes "
                            f"it last): finish the run first")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EraselabError(f"{path}: not JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise EraselabError(f"{path}: expected a JSON object")
    return manifest


def check_comparable(run_a, run_b) -> None:
    """Both runs finished, of one suite, both smoke or both not: else a one-line error (comparing
    runs of different suites would report every group as missing or new, and exit 0)."""
    ma, mb = finished_manifest(run_a), finished_manifest(run_b)
    name_a = Run(Path(run_a), None, ma).suite_name
    name_b = Run(Path(run_b), None, mb).suite_name
    if name_a != name_b:
        raise EraselabError(f"{run_b}: a run of suite {name_b!r}, but {run_a} is of suite {name_a!r}; "
                            f"compare two runs of one suite")
    if bool(ma.get("smoke")) != bool(mb.get("smoke")):
        smoke, full = (run_a, run_b) if ma.get("smoke") else (run_b, run_a)
        raise EraselabError(f"{smoke}: a --smoke run, {full} is not; compare runs of one kind")


def _load_catalog(run: Run):
    """The suite's catalog: a name, or a path relative to the run, the suite file or the cwd."""
    from bench.catalog import load_catalog

    ref = run.suite.get("catalog")
    if isinstance(ref, dict):  # a suite may embed the catalog's name/path as a mapping
        ref = ref.get("path") or ref.get("name")
    if not ref:
        run.problems.append("the manifest names no catalog: recorded parents are not highlighted")
        return None
    candidates = [run.path / str(ref)]
    if run.manifest.get("suite_file"):
        candidates.append(Path(run.manifest["suite_file"]).parent / str(ref))
    local = next((c for c in candidates if c.is_file()), None)
    return load_catalog(local if local is not None else str(ref))


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
