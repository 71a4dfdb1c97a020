"""The related-concept mapping of a run: what each erased concept became, per erasing method.

    from reports.mapping import analyse_run
    analyses = analyse_run(run, summary)   # one dict per (concept, erasing method)

"Before" is the original model's images of the concept's target prompts, "after" the erasing
method's; the summary itself is ``detectors.mapping.mapping_analysis`` (not re-implemented here).
Each result also carries the label distributions the mapping figure draws: the mean of the
per-image ``mapping_dist`` when the run recorded it, otherwise the share of ``mapped_to`` labels,
and ``space``: the label space the rows were classified in (``mapping_space``: "styles" for a
style concept, "objects" otherwise; "all labels" for runs scored before the column existed).
"""

from __future__ import annotations

from dataclasses import dataclass

from detectors.mapping import mapping_analysis
from reports import rundata as rd

MAPPING_SPACE = "mapping_space"  # the mapping scorer's column (detectors/zero_shot.py)


@dataclass(frozen=True)
class _NoCatalogConcept:
    """Stand-in when the manifest names no catalog: nothing is a recorded parent."""

    name: str
    parent: str | None = None
    related: tuple = ()


class _NoCatalog:
    def __getitem__(self, name: str) -> _NoCatalogConcept:
        return _NoCatalogConcept(name)


def _distribution(rows) -> tuple[dict[str, float], str]:
    dists = [rd.mapping_distribution(r.get(rd.MAPPING_DIST)) for r in rows]
    if dists and all(d for d in dists):
        labels = sorted({label for d in dists for label in d})
        return {l: sum(d.get(l, 0.0) for d in dists) / len(dists) for l in labels}, "mean probability"
    counts: dict[str, float] = {}
    for r in rows:
        counts[str(r[rd.MAPPED_TO])] = counts.get(str(r[rd.MAPPED_TO]), 0.0) + 1.0 / len(rows)
    return counts, "share of images"


def analyse_run(run, summary) -> list[dict]:
    catalog = run.catalog if run.catalog is not None else _NoCatalog()
    df = run.results
    target = df[df[rd.PROMPT_SET] == "target"]
    columns = [c for c in (rd.CONCEPT, rd.MAPPED_TO, rd.MAPPING_DIST, MAPPING_SPACE) if c in target.columns]
    out = []
    for key in summary.methods:
        model, method, variant = key
        if method == rd.ORIGINAL:
            continue
        after = target[(target[rd.MODEL].astype(str) == model) & (target[rd.METHOD].astype(str) == method)
                       & (target[rd.VARIANT] == variant)]
        before = target[(target[rd.MODEL].astype(str) == model) & (target[rd.METHOD] == rd.ORIGINAL)
                        & target[rd.CONCEPT].isin(set(after[rd.CONCEPT]))]
        rows = ([{**r, "phase": "before", "concept": str(r[rd.CONCEPT])} for r in before[columns].to_dict("records")]
                + [{**r, "phase": "after", "concept": str(r[rd.CONCEPT])} for r in after[columns].to_dict("records")])
        for r in rows:  # mapping_analysis reads "mapped_to"/"mapping_dist" under those names
            r["mapped_to"] = str(r[rd.MAPPED_TO])
            r["mapping_dist"] = rd.mapping_distribution(r.get(rd.MAPPING_DIST))
        for analysis in mapping_analysis(rows, catalog):
            concept = analysis["concept"]
            phase_rows = {p: [r for r in rows if r["concept"] == concept and r["phase"] == p]
                          for p in ("before", "after")}
            dist_before, basis = _distribution(phase_rows["before"]) if phase_rows["before"] else ({}, "")
            dist_after, basis_after = _distribution(phase_rows["after"])
            analysis.update(method_key=key, method=method, label=summary.labels[key],
                            dist_before=dist_before, dist_after=dist_after,
                            basis=basis if basis == basis_after else "share of images")
            if basis != basis_after:  # one phase without probabilities: compare like with like
                analysis["dist_before"] = _distribution([{**r, rd.MAPPING_DIST: None} for r in phase_rows["before"]])[0]
                analysis["dist_after"] = _distribution([{**r, rd.MAPPING_DIST: None} for r in phase_rows["after"]])[0]
            out.append(analysis)
    order = {c: i for i, c in enumerate(summary.concepts)}
    out.sort(key=lambda a: order.get(a["concept"], len(order)))
    return out
