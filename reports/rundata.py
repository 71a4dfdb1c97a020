"""Load and check a run directory for the report: ``load_run(Path("runs/mini"))``.

A run directory holds ``results.parquet`` (one row per image), ``aggregates.parquet`` (every
number the report prints, from bench/metrics.py) and ``manifest.json`` (bench/manifest.py).
``bench.rundir.load_tables`` reads and checks the three; this module adds what only the report
needs: every score column present, every listed image on disk, and the catalog. Missing inputs
are errors, never skipped (a missing image must not read as perfect erasure): each raises a
one-line ``EraselabError`` naming it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from bench.core.errors import EraselabError
from bench.manifest import RunManifest
from bench.core import schema as _schema

# Column names as bench/core/schema.py spells them.
MODEL, METHOD, VARIANT, CONCEPT = "model", "method", "variant", "concept"
PROMPT_SET, PROMPT_ID, PROMPT, SAMPLE, SEED = "prompt_set", "prompt_id", "prompt", "sample", "seed"
SUITE_SEED = "suite_seed"
IMAGE_PATH, EDIT_ID = "image_path", "edit_id"
DETECTED, CLIP_SCORE, MAPPED_TO, MAPPING_DIST = "detected", "clip_score", "mapped_to", "mapping_dist"
CLIP_IMAGE_COSINE = "clip_image_cosine"
ROW_COLUMNS = _schema.ROW_COLUMNS

ORIGINAL = _schema.ORIGINAL
PROMPT_SETS = _schema.PROMPT_SETS

IDENTITY_COLUMNS = (MODEL, METHOD, VARIANT, CONCEPT, PROMPT_SET, PROMPT_ID, PROMPT, SAMPLE, SEED, IMAGE_PATH)
SCORE_COLUMNS = (DETECTED, CLIP_SCORE, MAPPED_TO, CLIP_IMAGE_COSINE)


@dataclass
class Run:
    """One loaded, checked run: its rows, manifest, aggregates and catalog."""

    path: Path
    results: "object"                     # pandas.DataFrame, one row per image
    manifest: RunManifest
    aggregates: "object"                  # pandas.DataFrame (bench.metrics.AGGREGATE_COLUMNS)
    catalog: "object | None" = None       # bench.catalog.Catalog or None
    problems: list[str] = field(default_factory=list)  # non-fatal notes shown in the report

    @property
    def suite(self) -> dict:
        """The resolved suite as the manifest records it."""
        out = dict(self.manifest.resolved_suite)
        out.setdefault("name", self.manifest.suite)
        out.setdefault("catalog", self.manifest.catalog)
        return out

    @property
    def suite_name(self) -> str:
        return self.manifest.suite

    @property
    def name(self) -> str:
        return self.manifest.run or self.path.name

    def stage_seconds(self) -> dict:
        return dict(self.manifest.seconds_per_stage)

    def edits(self) -> dict:
        return dict(self.manifest.edits)


def load_run(path: str | Path, *, check_images: bool = True) -> Run:
    """Read and check a run directory; raises EraselabError naming the first missing thing."""
    from bench.rundir import load_tables

    tables = load_tables(path)
    run_dir, results = tables.path, tables.results
    results_path = run_dir / "results.parquet"
    for column in IDENTITY_COLUMNS + SCORE_COLUMNS:
        if column not in results.columns:
            raise EraselabError(f"{results_path}: missing column {column!r} "
                                f"(score the run before reporting it)")
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
    run = Run(path=run_dir, results=results, manifest=tables.manifest, aggregates=tables.aggregates)
    run.catalog = _load_catalog(run)
    return run


def _load_catalog(run: Run):
    """The suite's catalog: a name, or a path relative to the run, the suite file or the cwd."""
    from bench.catalog import load_catalog

    ref = run.manifest.catalog
    if not ref:
        run.problems.append("the manifest names no catalog: recorded parents are not highlighted")
        return None
    candidates = [Path(run.manifest.catalog_path)] if run.manifest.catalog_path else []
    candidates.append(run.path / str(ref))
    if run.manifest.suite_file:
        candidates.append(Path(run.manifest.suite_file).parent / str(ref))
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
