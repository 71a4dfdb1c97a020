"""Compare two runs' aggregates: the nightly regression check (``eraselab compare A B``).

For every (model, method, variant, concept, prompt set) in both runs, a metric differs when the
two bootstrap 95% intervals do not overlap (KID: when the difference exceeds twice the combined
subset standard deviation). A difference is a *regression* when it goes the bad way for that
prompt set: on ``target`` a higher detection rate (weaker erasure); on ``related`` / ``unrelated``
a lower detection rate, CLIP score or CLIP image similarity, or a higher KID. Other differences
are reported as changes. Groups present in only one run are listed as missing / new.
"""

from __future__ import annotations

import math
from pathlib import Path

from bench.errors import EraselabError
from bench.runner.schema import GROUP_KEY, INTERVAL_METRICS
from bench.stats import intervals_separated

# metric -> prompt set -> +1 (higher is worse) / -1 (lower is worse); absent: no direction
BAD_DIRECTION = {
    "detected_rate": {"target": +1, "related": -1, "unrelated": -1},
    "clip_score": {"related": -1, "unrelated": -1},
    "clip_image_cosine": {"related": -1, "unrelated": -1},
    "kid": {"related": +1, "unrelated": +1},
}


def load_aggregates(run_dir):
    import pandas as pd
    run_dir = Path(run_dir)
    path = run_dir / "aggregates.parquet"
    if path.is_file():
        return pd.read_parquet(path)
    results = run_dir / "results.parquet"
    if results.is_file():  # aggregates are derived: recompute when only the rows are there
        from bench.runner.aggregate import aggregate
        return aggregate(pd.read_parquet(results))
    raise EraselabError(f"{run_dir}: no aggregates.parquet or results.parquet; not a finished run")


def _nan(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def compare(a, b) -> dict:
    """{'regressions': [...], 'changes': [...], 'missing': [...], 'new': [...], 'compared': n}."""
    key = list(GROUP_KEY)
    a_idx = {tuple(r[k] for k in key): r for r in a.to_dict("records")}
    b_idx = {tuple(r[k] for k in key): r for r in b.to_dict("records")}
    out = {"regressions": [], "changes": [], "missing": [], "new": [], "compared": 0}
    for k in sorted(set(a_idx) - set(b_idx)):
        out["missing"].append(dict(zip(key, k)))
    for k in sorted(set(b_idx) - set(a_idx)):
        out["new"].append(dict(zip(key, k)))
    for k in sorted(set(a_idx) & set(b_idx)):
        ra, rb = a_idx[k], b_idx[k]
        out["compared"] += 1
        checks = [(m, ra[m], rb[m], ra[lo], ra[hi], rb[lo], rb[hi]) for m, lo, hi in INTERVAL_METRICS]
        for metric, va, vb, alo, ahi, blo, bhi in checks:
            if any(_nan(x) for x in (va, vb, alo, ahi, blo, bhi)):
                continue
            if intervals_separated((alo, ahi), (blo, bhi)):
                _record(out, k, key, metric, va, vb, [alo, ahi], [blo, bhi])
        ka, kb = ra.get("kid"), rb.get("kid")
        if not _nan(ka) and not _nan(kb):
            sa, sb = ra.get("kid_std") or 0.0, rb.get("kid_std") or 0.0
            margin = 2 * math.sqrt((0 if _nan(sa) else sa) ** 2 + (0 if _nan(sb) else sb) ** 2)
            if abs(kb - ka) > margin:
                _record(out, k, key, "kid", ka, kb, None, None)
    return out


def _record(out, k, key, metric, va, vb, ia, ib):
    prompt_set = k[key.index("prompt_set")]
    direction = BAD_DIRECTION.get(metric, {}).get(prompt_set, 0)
    method = k[key.index("method")]
    item = {**dict(zip(key, k)), "metric": metric, "a": float(va), "b": float(vb),
            "delta": float(vb) - float(va), "a_ci": ia, "b_ci": ib}
    worse = direction != 0 and (vb - va) * direction > 0 and method != "original"
    out["regressions" if worse else "changes"].append(item)


def format_report(result: dict, a_name: str, b_name: str) -> str:
    lines = [f"compared {result['compared']} groups: {a_name} -> {b_name}"]
    for kind in ("regressions", "changes"):
        for r in result[kind]:
            lines.append(f"{kind[:-1].upper():10s} {r['model']} {r['method']}"
                         f"{'[' + r['variant'] + ']' if r['variant'] else ''} {r['concept']!r} "
                         f"{r['prompt_set']}: {r['metric']} {r['a']:.4f} -> {r['b']:.4f}")
    for kind in ("missing", "new"):
        for r in result[kind]:
            lines.append(f"{kind.upper():10s} {r['model']} {r['method']} {r['concept']!r} {r['prompt_set']}")
    lines.append(f"{len(result['regressions'])} regressions, {len(result['changes'])} other changes, "
                 f"{len(result['missing'])} missing, {len(result['new'])} new")
    return "\n".join(lines)
