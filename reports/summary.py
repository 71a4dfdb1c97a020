"""The report's opening sentences: which method erased what, at what cost, and what failed.

    from reports.summary import headline
    for line in headline(summary): print(line.text)
    # "fewshot-te cut snoopy detection from 94% to 12% in 2.1 s; unrelated detection 90% -> 88%."

A method erased a concept when its detection rate on target prompts lies below the lower end of
the original model's 95% interval; otherwise the sentence says plainly that it did not.
"""

from __future__ import annotations

from dataclasses import dataclass

from reports.rundata import ORIGINAL
from reports.tables import fmt_number


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
        if after.clearly_below(before):
            text = (f"{row['label']} cut {row['concept']} detection from {_pct(before)} to {_pct(after)}"
                    f"{' in ' + secs if secs else ''}{keep}.")
            lines.append(Line(text, True, row["concept"], row["label"]))
        else:
            text = (f"{row['label']} did NOT erase {row['concept']}: detection {_pct(after)} "
                    f"({_pct_range(after)}) vs {_pct(before)} ({_pct_range(before)}) for the original "
                    f"model, 95% intervals that overlap{'; the edit took ' + secs if secs else ''}.")
            lines.append(Line(text, False, row["concept"], row["label"]))
    return lines


def _pct_range(est) -> str:
    return f"{100 * est.lo:.0f}\u2013{100 * est.hi:.0f}%"
