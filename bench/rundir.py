"""Read a finished run folder: its rows, aggregates and manifest, checked, without torch.

    from bench.rundir import load_tables
    tables = load_tables("runs/mini-default")
    tables.results, tables.aggregates, tables.manifest.suite

Shared by ``eraselab compare`` and the report, so both refuse the same broken folders with the
same one-line errors: a missing or unreadable file, aggregates written by another format, a run
that has not finished (the runner writes the manifest last).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.core.errors import EraselabError
from bench.manifest import RunManifest, read_manifest


@dataclass
class RunTables:
    path: Path
    results: object        # pandas.DataFrame, one row per image (bench.metrics.normalise-d)
    aggregates: object     # pandas.DataFrame, bench.metrics.AGGREGATE_COLUMNS
    manifest: RunManifest


def read_parquet(path: Path):
    import pandas as pd

    if not path.is_file():
        raise EraselabError(f"{path}: file not found (is {path.parent} a finished run?)")
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a damaged file
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise EraselabError(f"{path}: cannot read parquet ({type(exc).__name__}: {first[:200]})") from None


def load_tables(run_dir) -> RunTables:
    from bench.metrics import AGGREGATE_COLUMNS, normalise

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise EraselabError(f"{run_dir}: run directory not found")
    manifest_path = run_dir / "manifest.json"
    if not manifest_path.is_file():
        raise EraselabError(f"{manifest_path}: file not found (is {run_dir} a finished run? the runner "
                            f"writes it last)")
    manifest = read_manifest(manifest_path)
    results = read_parquet(run_dir / "results.parquet")
    if results.empty:
        raise EraselabError(f"{run_dir / 'results.parquet'}: no rows")
    for column in ("model", "method", "variant", "concept", "prompt_set", "prompt_id", "sample", "seed"):
        if column not in results.columns:
            raise EraselabError(f"{run_dir / 'results.parquet'}: missing column {column!r}")
    aggregates = read_parquet(run_dir / "aggregates.parquet")
    missing = [c for c in AGGREGATE_COLUMNS if c not in aggregates.columns]
    if missing:
        raise EraselabError(f"{run_dir / 'aggregates.parquet'}: missing column {missing[0]!r} (written by an "
                            f"older eraselab); run the suite again into the same folder to re-aggregate")
    aggregates = aggregates.copy()
    aggregates["variant"] = aggregates["variant"].fillna("").astype(str)
    return RunTables(path=run_dir, results=normalise(results), aggregates=aggregates, manifest=manifest)


def compare_runs(run_a, run_b, any_suites: bool = False):
    """(bench.metrics.Comparison, notes) of two finished run folders: the one code path behind
    ``eraselab compare`` and ``eraselab report --compare``."""
    from bench.metrics import compare

    a, b = load_tables(run_a), load_tables(run_b)
    notes = []
    if a.manifest.suite != b.manifest.suite:
        if not any_suites:
            raise EraselabError(f"{run_b}: a run of suite {b.manifest.suite!r}, but {run_a} is of suite "
                                f"{a.manifest.suite!r}; pass --any-suites to compare their shared groups")
        notes.append(f"runs of different suites ({a.manifest.suite!r} vs {b.manifest.suite!r}): only "
                     f"their shared groups are compared")
    if a.manifest.smoke != b.manifest.smoke:
        notes.append("one run is a --smoke run and the other is not: their numbers are not comparable")
    return compare(a.results, a.aggregates, b.results, b.aggregates), notes


def resurgence_rows(results):
    """The rows a suite's ``resurgence:`` section planned (bench/runner/resurgence_plan.py)."""
    if "resurgence" not in results.columns:
        return results.iloc[0:0]
    return results[results["resurgence"].notna()]


def robustness_rows(results):
    """The rows a suite's ``robustness:`` section planned (bench/runner/robustness_plan.py)."""
    if "probe" not in results.columns:
        return results.iloc[0:0]
    return results[results["probe"].notna()]


def study_arms(results) -> set:
    """(model, method, variant) of every resurgence and robustness arm: main tables and summaries
    leave them out (they have sections of their own in the report)."""
    keys = set()
    for rows in (resurgence_rows(results), robustness_rows(results)):
        keys |= set(zip(rows["model"].astype(str), rows["method"].astype(str), rows["variant"].astype(str)))
    return keys


def main_aggregates(aggregates, results):
    """The aggregates without the study arms' rows (what the main table and the CLI summary show)."""
    keys = study_arms(results)
    if not keys:
        return aggregates
    keep = [(str(m), str(me), str(v)) not in keys
            for m, me, v in zip(aggregates["model"], aggregates["method"], aggregates["variant"])]
    return aggregates[keep]
