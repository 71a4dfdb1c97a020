"""Where an edit's change went: the relative weight change per module group and layer.

    from methods.change_map import change_by_group
    rows = change_by_group(delta, originals)   # new and base values of the changed tensors
    # [{"component": "text_encoder", "block": "layer2", "kind": "mlp", "tensors": 2,
    #   "params": 131584, "params_changed": 131584, "relative_change": 0.0123}, ...]

A group is (component, block, kind): the UNet's blocks are ``down_blocks.N``, ``mid_block``,
``up_blocks.N`` and its stem and head modules; the text encoder's are its layers (``layerN``),
``embeddings`` and ``final-norm``. Kinds: ``cross-attention``, ``self-attention``,
``feed-forward``, ``resnet``, ``transformer-proj`` and ``norm`` in the UNet; ``mlp``,
``attention`` and ``norm`` in the text encoder; ``other`` for anything else. The relative change of
a group is ||W_edited - W_base|| / ||W_base|| over all its changed tensors together (Frobenius), so
groups of different sizes compare on one scale. Groups the edit did not touch do not appear: their
change is zero. ``erase()`` writes these rows into every edit's record (``change_by_group``), and
the runner's manifest carries them per edit.
"""

from __future__ import annotations

import re

_UNET_KINDS = ((".attn2.", "cross-attention"), (".attn1.", "self-attention"), (".ff.", "feed-forward"),
               (".resnets.", "resnet"), (".proj_in.", "transformer-proj"),
               (".proj_out.", "transformer-proj"), ("norm", "norm"))
_TEXT_KINDS = ((".mlp.", "mlp"), (".self_attn.", "attention"), ("layer_norm", "norm"))


def group_of(name: str) -> tuple[str, str, str]:
    """(component, block, kind) of a pipeline tensor name such as ``unet.mid_block.attentions...``."""
    component, _, rest = name.partition(".")
    if component == "text_encoder":
        layer = re.search(r"\.layers\.(\d+)\.", name)
        if layer:
            block = f"layer{layer.group(1)}"
        elif ".embeddings." in name:
            block = "embeddings"
        elif "final_layer_norm" in name:
            block = "final-norm"
        else:
            block = "other"
        kinds = _TEXT_KINDS
    else:
        parts = rest.split(".")
        block = ".".join(parts[:2]) if parts[0] in ("down_blocks", "up_blocks") else parts[0]
        kinds = _UNET_KINDS if component == "unet" else ()
    kind = next((k for needle, k in kinds if needle in name), "other")
    return component, block, kind


def change_by_group(delta: dict, originals: dict) -> list[dict]:
    """Rows of the changed groups, largest relative change first (ties by name)."""
    groups: dict[tuple, dict] = {}
    for name, new in delta.items():
        base = originals[name].detach().double()
        diff = new.detach().double() - base
        g = groups.setdefault(group_of(name), {"tensors": 0, "params": 0, "params_changed": 0,
                                               "diff_sq": 0.0, "base_sq": 0.0})
        g["tensors"] += 1
        g["params"] += base.numel()
        g["params_changed"] += int((diff != 0).sum())
        g["diff_sq"] += float((diff ** 2).sum())
        g["base_sq"] += float((base ** 2).sum())
    rows = []
    for (component, block, kind), g in groups.items():
        relative = (g["diff_sq"] / g["base_sq"]) ** 0.5 if g["base_sq"] > 0 else None
        rows.append({"component": component, "block": block, "kind": kind, "tensors": g["tensors"],
                     "params": g["params"], "params_changed": g["params_changed"],
                     "relative_change": None if relative is None else round(relative, 6)})
    rows.sort(key=lambda r: (-(r["relative_change"] or 0.0), r["component"], r["block"], r["kind"]))
    return rows
