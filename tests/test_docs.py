"""The project's own documents: every relative link in README.md, CHANGELOG.md and docs/*.md leads
to a file of the repository (and to a heading, for ``#anchor`` links), and the mini world's model
card is exactly what its generator writes from the recorded eval.json.

    python -m pytest tests/test_docs.py -q
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"\s", "-", re.sub(r"[^\w\- ]", "", text))


def anchors(path: Path) -> set[str]:
    return {slug(line.lstrip("#")) for line in path.read_text().splitlines() if line.startswith("#")}


def links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)  # code blocks hold no links
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]


def broken_links(doc: Path) -> list[str]:
    """The relative links of ``doc`` whose file or heading does not exist."""
    broken = []
    for target in links(doc):
        file_part, _, anchor = target.partition("#")
        dest = (doc.parent / file_part).resolve() if file_part else doc
        if not dest.exists():
            broken.append(target)
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(target)
    return broken


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc):
    assert doc.is_file()
    assert not broken_links(doc), f"{doc.name}: broken links {broken_links(doc)}"


def test_slug_matches_githubs_rule():
    assert slug("Adding a scorer and its column") == "adding-a-scorer-and-its-column"
    assert slug("Seeds and same-seed twins") == "seeds-and-same-seed-twins"
    assert slug("Intervals: a hierarchical bootstrap") == "intervals-a-hierarchical-bootstrap"


def test_a_broken_link_is_caught(tmp_path):
    (tmp_path / "there.md").write_text("# Here\n")
    doc = tmp_path / "x.md"
    doc.write_text("# Title\n[a](#title) [b](there.md#here) [c](missing.md) [d](#nowhere) "
                   "[e](there.md#gone) [f](https://example.org/x)\n```\n[g](in-code.md)\n```\n")
    assert broken_links(doc) == ["missing.md", "#nowhere", "there.md#gone"]


def test_model_card_is_what_the_generator_writes_from_eval_json():
    from bench.miniworld.evaluate import model_card
    from bench.core.paths import MINIWORLD_DIR
    card, record = MINIWORLD_DIR / "MODEL_CARD.md", MINIWORLD_DIR / "eval.json"
    if not record.is_file():
        pytest.skip("no eval.json: the mini world has not been evaluated here")
    assert card.read_text() == model_card(json.loads(record.read_text())), \
        "MODEL_CARD.md differs from its generator: python -m bench.miniworld.evaluate --rewrite-card"
