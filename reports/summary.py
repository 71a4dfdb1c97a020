"""The report's opening sentences: which method erased what, at what cost, and what failed.

    from reports.summary import headline
    for line in headline(summary): print(line.text)
    # "fewshot-te cut snoopy detection from 94% to 12% in 2.1 s; unrelated detection 90% -> 88%."

A method erased a concept when the paired change of its target detection from the original's
same-seed twins is significant after Benjamini-Hochberg and its interval lies below zero
(``bench.metrics.verdict``); otherwise the sentence says plainly that it did not, and why.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.metrics import BETTER_SEED_DEPENDENT
from bench.metrics import erased as is_erased
from reports.rundata import ORIGINAL
from reports.tables import Cell, fmt_interval, fmt_number, second_judge_note


@dataclass(frozen=True)
class Line:
    text: str
    ok: bool              # False: the method failed to erase (shown as a failure)
    concept: str
    method: str


def _pct(est) -> str:
    return fmt_number(est.value, "pct")


def headline(summary) -> list[Line]:
    lines = []
    for row in summary.rows:
        if row["method"] == ORIGINAL:
            continue
        base = summary.original(row["concept"], row["model"])
        if base is None or base["det_target"].missing or row["det_target"].missing:
            lines.append(Line(f"{row['label']} on {row['concept']}: no target images to compare with the "
                              f"original model.", False, row["concept"], row["label"]))
            continue
        before, after = base["det_target"], row["det_target"]
        if before.hi == 0:
            # Nothing to erase: a method cannot be judged on a concept the original never shows.
            lines.append(Line(f"{row['label']} on {row['concept']}: cannot be judged: the original "
                              f"model's images never show {row['concept']} (detection 0%).", False,
                              row["concept"], row["label"]))
            continue
        secs = "" if row["seconds"].missing else fmt_number(row["seconds"].value, "seconds")
        keep = ""
        if not (base["det_unrelated"].missing or row["det_unrelated"].missing):
            keep = f"; unrelated detection {_pct(base['det_unrelated'])} \u2192 {_pct(row['det_unrelated'])}"
        change = (f"change {fmt_number(after.delta, 'signed_pct')} "
                  f"{fmt_interval(Cell(after.delta, after.delta_lo, after.delta_hi), 'signed_pct')}, "
                  f"adjusted p {fmt_number(after.p_adj, 'p')}")
        seeds = " (single erasure seed)" if after.single_seed else ""
        if is_erased(after.verdict):
            text = (f"{row['label']} cut {row['concept']} detection from {_pct(before)} to {_pct(after)}"
                    f" ({change}){' in ' + secs if secs else ''}{keep}{seeds}{second_judge_note(row)}.")
            lines.append(Line(text, True, row["concept"], row["label"]))
        elif after.delta < 0:
            # Detection went down, but the test cannot tell it from chance (too few pairs after
            # false-discovery control) or it did not hold across erasure seeds: not shown erased.
            why = ("significant for these edits, but not across erasure seeds"
                   if after.verdict == BETTER_SEED_DEPENDENT else "not significant")
            text = (f"{row['label']} on {row['concept']}: erasure NOT established: detection "
                    f"{_pct(after)} vs {_pct(before)} for the original model ({change}: {why})"
                    f"{'; the edit took ' + secs if secs else ''}{seeds}{second_judge_note(row)}.")
            lines.append(Line(text, False, row["concept"], row["label"]))
        else:
            text = (f"{row['label']} did NOT erase {row['concept']}: detection {_pct(after)} vs "
                    f"{_pct(before)} for the original model ({change})"
                    f"{'; the edit took ' + secs if secs else ''}{seeds}{second_judge_note(row)}.")
            lines.append(Line(text, False, row["concept"], row["label"]))
    return lines
