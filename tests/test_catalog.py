"""Catalog schema: the shipped catalogs load, and every bad case is one specific line."""

from pathlib import Path

import pytest

from bench.catalog import load_catalog, validate_catalog_file
from bench.core.errors import ValidationError

GOOD = """\
name: t
version: 1
templates:
  object: ["a photo of a {}"]
  instance: ["a photo of {}"]
  style: ["a painting in the style of {}"]
concepts:
  - {name: dog, type: object}
  - {name: snoopy, type: instance, parent: dog, related: [dog]}
  - {name: van gogh, type: style}
"""


def write(tmp_path: Path, text: str, name: str = "cat.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_shipped_miniworld_catalog():
    cat = load_catalog("miniworld")
    assert len(cat.of_type("object")) >= 10
    instances = cat.of_type("instance")
    assert len(instances) >= 3 and all(c.parent in cat for c in instances)
    assert len(cat.of_type("style")) >= 4
    assert cat["snoopy"].parent == "english springer"
    assert cat["church"].imagenet_id == 497
    assert cat["church"].prompts()[0] == "a photo of a church"


def test_shipped_paper_catalog_has_imagenette_ids():
    cat = load_catalog("paper")
    imagenette = {"tench": 0, "English springer": 217, "cassette player": 482, "chain saw": 491,
                  "church": 497, "French horn": 566, "garbage truck": 569, "gas pump": 571,
                  "golf ball": 574, "parachute": 701}
    for name, class_id in imagenette.items():
        assert cat[name].imagenet_id == class_id
    for name in ("Snoopy", "Eiffel Tower", "Van Gogh", "Apple logo"):
        assert cat[name].related, name


def test_good_catalog_loads(tmp_path):
    cat = load_catalog(write(tmp_path, GOOD))
    assert cat.children("dog")[0].name == "snoopy"


@pytest.mark.parametrize("old,new,expected", [
    ("  - {name: dog, type: object}", "  - {name: dog, type: object, colour: red}",
     "concept 'dog': key 'colour': unknown key"),
    ("  - {name: dog, type: object}", "  - {type: object}", "concept #0: key 'name': missing required key"),
    ("  - {name: dog, type: object}", "  - {name: dog}", "concept 'dog': key 'type': missing required key"),
    ("parent: dog,", "parent: cat,", "concept 'snoopy': key 'parent': 'cat' is not a concept"),
    ("  - {name: van gogh, type: style}", "  - {name: dog, type: object}",
     "concept 'dog': key 'name': duplicate concept name"),
    ('  object: ["a photo of a {}"]', '  object: [""]', "key 'templates.object': empty template"),
    ('  object: ["a photo of a {}"]', '  object: ["a photo"]', "exactly one '{}' placeholder"),
    ("version: 1", "version: one", "key 'version': expected a positive integer"),
    ("name: t\n", "name: t\nextra: 1\n", "unknown top-level key 'extra'"),
    ("name: t\n", "name: t\nnothing_prompts: [noise, 3]\n", "key 'nothing_prompts': expected a list of non-empty strings"),
    ("type: instance, parent: dog,", "type: instance,", "key 'parent': an instance needs a parent"),
    ("  - {name: dog, type: object}", "  - {name: dog, type: animal}", "key 'type': expected one of"),
    ("related: [dog]", "related: [cat]", "key 'related': 'cat' is not a concept"),
])
def test_each_bad_case_is_one_specific_line(tmp_path, old, new, expected):
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new))
    problems = validate_catalog_file(path)
    assert problems, "expected a problem"
    assert any(expected in p for p in problems), problems
    for p in problems:
        assert "\n" not in p and p.startswith(str(path))


def test_parent_cycle_detected(tmp_path):
    text = GOOD + "  - {name: a, type: instance, parent: b}\n  - {name: b, type: instance, parent: a}\n"
    problems = validate_catalog_file(write(tmp_path, text))
    assert any("cycle" in p and "key 'parent'" in p for p in problems), problems


def test_include_inheritance_and_override(tmp_path):
    write(tmp_path, GOOD, "base.yaml")
    child = write(tmp_path, "include: base.yaml\nname: child\nversion: 2\nconcepts:\n"
                            "  - {name: dog, type: object, related: [snoopy]}\n"
                            "  - {name: cat, type: object}\n", "child.yaml")
    cat = load_catalog(child)
    assert cat.name == "child" and cat.version == 2
    assert cat["dog"].related == ("snoopy",)  # overridden by name
    assert "cat" in cat and "van gogh" in cat  # appended, inherited


def test_include_cycle_is_an_error(tmp_path):
    write(tmp_path, "include: b.yaml\n", "a.yaml")
    write(tmp_path, "include: a.yaml\n", "b.yaml")
    problems = validate_catalog_file(tmp_path / "a.yaml")
    assert len(problems) == 1 and "include cycle" in problems[0]


def test_invalid_yaml_names_file_and_line(tmp_path):
    path = write(tmp_path, "name: [unclosed\n")
    problems = validate_catalog_file(path)
    assert len(problems) == 1 and str(path) in problems[0] and "line" in problems[0]


def test_load_raises_with_all_problems(tmp_path):
    path = write(tmp_path, GOOD.replace("parent: dog,", "parent: cat,").replace("version: 1", "version: 0"))
    with pytest.raises(ValidationError) as info:
        load_catalog(path)
    assert len(info.value.problems) == 2


def test_unknown_concept_lookup_suggests(tmp_path):
    cat = load_catalog("miniworld")
    with pytest.raises(Exception, match="did you mean 'snoopy'"):
        cat["snopy"]
