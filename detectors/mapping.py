"""The mapping analysis: what an erased concept turned into, before vs after erasure.

Input: the per-image rows of the ``mapping`` scorer (``mapped_to``, ``mapping_dist`` and
``mapping_space``) for the ``target`` prompts of each erased concept, from the original model
("before") and the edited one ("after"). Output, per concept, ``space`` -- the label space its
rows were classified in ("styles" for a style, "objects" otherwise, see
``bench.labels.label_space``; ``ALL_LABELS`` for rows that name none: the mapping scorer's
version 1 classified every image over every label; "mixed" if the rows disagree) -- and per phase:

* ``top_label`` -- the label most images were mapped to, and ``top_share`` -- the share of
  images mapped to it (hard counts; ties broken by the mean probability, then by name);
* ``top_mean_p`` -- that label's mean probability over the images (soft view);
* ``is_self`` / ``is_parent`` / ``is_related`` -- whether it is the concept itself, the catalog's
  recorded parent (Snoopy -> dog), or one of its related concepts;
* ``entropy_bits`` -- entropy of the hard label distribution (0: every image maps to one label;
  log2(k): spread evenly over k labels), and ``distribution`` -- that distribution.

    from detectors.mapping import mapping_analysis
    table = mapping_analysis(rows, catalog)   # rows: dicts with concept, phase, mapped_to, mapping_dist
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Iterable

ALL_LABELS = "all labels"  # the space of rows without ``mapping_space`` (mapping scorer v1)
MIXED = "mixed"


def summarize_mapping(mapped_to: list[str], dists: list[dict[str, float]] | None = None) -> dict:
    """Top label, its share, its mean probability and the entropy of one group of images."""
    if not mapped_to:
        raise ValueError("no images to summarise")
    counts = Counter(mapped_to)
    n = len(mapped_to)
    mean_p: dict[str, float] = {}
    if dists:
        for dist in dists:
            for label, p in dist.items():
                mean_p[label] = mean_p.get(label, 0.0) + float(p) / len(dists)
    top = max(counts, key=lambda l: (counts[l], mean_p.get(l, 0.0), _reverse_key(l)))
    distribution = {label: counts[label] / n for label in sorted(counts, key=lambda l: (-counts[l], l))}
    entropy = -sum(p * math.log2(p) for p in distribution.values() if p > 0)
    return {"top_label": top, "top_share": counts[top] / n,
            "top_mean_p": mean_p.get(top) if dists else None,
            "entropy_bits": entropy + 0.0, "n": n, "distribution": distribution}


def _reverse_key(label: str):
    # max() with this key prefers the alphabetically first label on a full tie (deterministic).
    return tuple(-ord(c) for c in label)


def relation(label: str, concept) -> dict:
    """How ``label`` relates to ``concept`` in the catalog."""
    return {"is_self": label == concept.name,
            "is_parent": concept.parent is not None and label == concept.parent,
            "is_related": label in concept.related}


def row_space(row: dict) -> str:
    space = row.get("mapping_space")
    # a parquet null reads as None or NaN: any non-string means "not recorded"
    return space if isinstance(space, str) and space else ALL_LABELS


def rows_space(rows: Iterable[dict]) -> str:
    """The one label space of ``rows`` (``ALL_LABELS`` when they name none, ``MIXED`` if several)."""
    spaces = {row_space(r) for r in rows}
    return spaces.pop() if len(spaces) == 1 else MIXED


def analyse_concept(concept, before: list[dict], after: list[dict]) -> dict:
    """Before/after summaries of one concept; ``before``/``after`` are mapping rows."""
    out = {"concept": concept.name, "parent": concept.parent, "space": rows_space(before + after)}
    for phase, rows in (("before", before), ("after", after)):
        if not rows:
            continue
        summary = summarize_mapping([r["mapped_to"] for r in rows],
                                    [r["mapping_dist"] for r in rows if r.get("mapping_dist")] or None)
        rel = relation(summary["top_label"], concept)
        for key, value in {**summary, **rel}.items():
            out[f"{phase}_{key}"] = value
    if before and after:
        out["self_share_drop"] = (out["before_distribution"].get(concept.name, 0.0)
                                  - out["after_distribution"].get(concept.name, 0.0))
    return out


def mapping_analysis(rows: Iterable[dict], catalog, phase_key: str = "phase") -> list[dict]:
    """One summary per concept found in ``rows`` (``rows[i][phase_key]`` is "before"/"after")."""
    groups: dict[str, dict[str, list[dict]]] = {}
    for row in rows:
        phase = row[phase_key]
        if phase not in ("before", "after"):
            raise ValueError(f"{phase_key} must be 'before' or 'after', got {phase!r}")
        groups.setdefault(row["concept"], {"before": [], "after": []})[phase].append(row)
    return [analyse_concept(catalog[name], g["before"], g["after"]) for name, g in sorted(groups.items())]
