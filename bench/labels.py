"""The zero-shot label vocabulary of a catalog: which labels an image is classified among, and
the prompts that stand for each label. Pure functions of a catalog, no model.

    from bench.labels import label_space, space_prompts
    space_prompts(catalog, label_space(catalog["van gogh"]))   # {"van gogh": [...], ..., "plain": [...]}

Used by the CLIP zero-shot scorers (detectors/zero_shot.py, which documents the label spaces) and
by the mini world's CLIP, whose model card measures zero-shot accuracy with these same prompts.
"""

from __future__ import annotations

NOTHING = "nothing"
NOTHING_PROMPTS = ("an empty picture", "a picture of nothing", "noise")
DEFAULT_TEMPLATE = "a photo of a {}"
OBJECTS_SPACE, STYLES_SPACE = "objects", "styles"
PLAIN = "plain"  # the styles space's "no style" label


def label_space(concept) -> str:
    """The label space images of ``concept`` are classified in (None: no catalog concept)."""
    return STYLES_SPACE if concept is not None and concept.is_style else OBJECTS_SPACE


def zero_shot_prompts(catalog, extra_labels=(), template: str = DEFAULT_TEMPLATE,
                      nothing: bool = True) -> dict[str, list[str]]:
    """label -> its prompts, in a fixed order: catalog concepts, extra labels, nothing."""
    styles = [c.name for c in catalog.of_type("style")]
    out: dict[str, list[str]] = {}
    for concept in catalog.concepts.values():
        prompts = concept.prompts()
        if not concept.is_style:
            prompts += [f"{prompts[0]} in the style of {style}" for style in styles]
        out[concept.name] = prompts
    for label in extra_labels:
        out.setdefault(label, [template.replace("{}", label)])
    if nothing:
        out[NOTHING] = list(catalog.nothing_prompts or NOTHING_PROMPTS)
    return out


def space_prompts(catalog, space: str, extra_labels=(), template: str = DEFAULT_TEMPLATE,
                  nothing: bool = True) -> dict[str, list[str]]:
    """label -> its prompts for one label space (see the module docstring), in a fixed order."""
    if space == OBJECTS_SPACE:
        styles = {c.name for c in catalog.of_type("style")}
        return {label: prompts for label, prompts in
                zero_shot_prompts(catalog, extra_labels, template, nothing).items() if label not in styles}
    if space == STYLES_SPACE:
        plain = [c.prompts()[0] for c in catalog.concepts.values() if not c.is_style]
        out = {c.name: c.prompts() + [f"{p} in the style of {c.name}" for p in plain]
               for c in catalog.of_type("style")}
        out[PLAIN] = plain
        return out
    raise ValueError(f"unknown label space {space!r}; expected {OBJECTS_SPACE!r} or {STYLES_SPACE!r}")
