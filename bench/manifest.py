"""The run manifest (``manifest.json``): one typed, versioned record of what a run was.

    from bench.manifest import RunManifest, read_manifest
    manifest = read_manifest("runs/mini-default/manifest.json")
    manifest.suite_name, manifest.edits["569dccc287da89d4"].seconds

The runner writes it (``bench/runner/run.py``), the synthetic fixture writes it
(``reports/synthetic.py``), and the report and compare read it, all through this class. A file
whose ``format`` is not ``FORMAT`` is refused with a one-line error that says how to rewrite it
(re-running the suite into the same folder reuses every image and rewrites the manifest).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from bench.core.errors import EraselabError

FORMAT = "eraselab-run/2"


@dataclass
class EditRecord:
    """What one edit was and what it cost."""

    method: str
    concept: str | None
    variant: str = ""
    model: str = ""
    seed: int | None = None
    overrides: dict = field(default_factory=dict)
    seconds: float | None = None
    peak_memory_mb: float | None = None
    params_changed: int | None = None                     # base weights the edit changes
    params_added: int | None = None                       # numbers it adds for sampling (adapters)
    delta_bytes: int | None = None
    change_by_group: list = field(default_factory=list)   # methods/change_map.py rows

    @property
    def params_edited(self) -> int | None:
        """Changed plus added: what the edit costs in parameters, weight edit or adapter alike."""
        if self.params_changed is None:
            return None
        return self.params_changed + (self.params_added or 0)


@dataclass
class RunManifest:
    run: str                                  # the run folder's name
    suite: str                                # the suite's name
    suite_file: str = ""                      # where the suite was read from
    catalog: str = ""                         # the catalog as the suite names it (name or path)
    catalog_path: str = ""                    # the catalog file it resolved to
    smoke: bool = False                       # tiny random stand-ins (``eraselab run --smoke``)
    resolved_suite: dict = field(default_factory=dict)
    effective: dict = field(default_factory=dict)      # models, sampler, prompt sets, seeds as run
    counts: dict = field(default_factory=dict)         # edits, images, rows
    versions: dict = field(default_factory=dict)
    git_commit: str | None = None
    hardware: dict = field(default_factory=dict)
    seconds_per_stage: dict = field(default_factory=dict)
    invocations: list = field(default_factory=list)
    edits: dict[str, EditRecord] = field(default_factory=dict)
    format: str = FORMAT

    def to_json(self) -> str:
        data = asdict(self)
        return json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"

    @classmethod
    def from_dict(cls, data: dict, where: str = "manifest") -> "RunManifest":
        if not isinstance(data, dict):
            raise EraselabError(f"{where}: expected a JSON object")
        fmt = data.get("format")
        if fmt != FORMAT:
            raise EraselabError(f"{where}: manifest format {fmt!r}, expected {FORMAT!r}; run the suite "
                                f"again into the same folder to rewrite it (finished work is reused)")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise EraselabError(f"{where}: unknown manifest key {unknown[0]!r}")
        for required in ("run", "suite"):
            if not isinstance(data.get(required), str):
                raise EraselabError(f"{where}: key {required!r}: expected a string")
        edits = data.get("edits") or {}
        if not isinstance(edits, dict):
            raise EraselabError(f"{where}: key 'edits': expected a mapping of edit id to record")
        edit_keys = {f.name for f in fields(EditRecord)}
        parsed = {}
        for edit_id, rec in edits.items():
            if not isinstance(rec, dict) or not {"method", "concept"} <= set(rec):
                raise EraselabError(f"{where}: edits[{edit_id!r}]: expected a record with method and concept")
            bad = sorted(set(rec) - edit_keys)
            if bad:
                raise EraselabError(f"{where}: edits[{edit_id!r}]: unknown key {bad[0]!r}")
            parsed[str(edit_id)] = EditRecord(**rec)
        return cls(**{**data, "edits": parsed})


def write_manifest(path, manifest: RunManifest) -> None:
    from bench.core.files import write_text

    write_text(Path(path), manifest.to_json())


def read_manifest(path) -> RunManifest:
    path = Path(path)
    if not path.is_file():
        raise EraselabError(f"{path}: file not found (is {path.parent} a finished run?)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EraselabError(f"{path}: not JSON ({exc})") from None
    return RunManifest.from_dict(data, str(path))
