"""The figures of the report's robustness sections (reports/robustness.py).

    from reports.robustness_figures import robustness_figures
    for name, title, fig, caption in robustness_figures(section, "robustness-01"):
        save(fig, out_dir / "figures", name)

A heat map of attack success pooled over the erased concepts (arms x probes, the original model
first: the control), and example images: successful attacks beside the original model's image
of the same prompt and seed.
"""

from __future__ import annotations

import math

from bench.robustness import ALL
from reports.figures import heatmap_figure, new_figure, text

MAX_EXAMPLES = 6


def success_heatmap(section):
    import numpy as np

    frame = section.curves["table"]
    pooled = frame[(frame["concept"] == ALL) & frame["post"].notna()]
    if pooled.empty:
        return None
    arms = list(dict.fromkeys(pooled["arm"].astype(str)))
    arms.sort(key=lambda a: a != "original")
    probes = list(dict.fromkeys(pooled["probe"].astype(str)))
    values = np.full((len(arms), len(probes) + 1), np.nan)
    for r in pooled.itertuples():
        row = arms.index(str(r.arm))
        values[row, probes.index(str(r.probe)) + 1] = 100 * r.post
        # plain: the arm's target prompts (a prompt probe's pre reads them all; an attack's, its base prompts)
        if math.isnan(values[row, 0]) or r.kind == "prompt":
            values[row, 0] = 100 * r.pre
    return heatmap_figure(values, arms, ["plain prompts", *probes], "attack success (%)")


def _examples(run, frame) -> list[tuple]:
    """(attacked row, original row) for up to MAX_EXAMPLES successful attacks, one per (arm, probe)."""
    from bench.metrics import normalise
    from bench.rundir import robustness_rows
    df = normalise(run.results)
    rows = robustness_rows(df)
    rows = rows[(rows["probe_arm"] != "original") & (rows["detected"] == 1.0)]
    key = ["concept", "prompt_id", "sample", "suite_seed"]
    out = []
    for (arm, probe), group in rows.groupby(["probe_arm", "probe"], sort=True):
        if probe not in set(frame["probe"]):
            continue
        hit = group.iloc[0]
        if hit["probe_kind"] in ("prompt", "image"):  # the control: the original model's same probe image
            pool = df[(df["probe"] == probe) & (df["probe_arm"] == "original")]
        else:  # the original model's plain image of the attack's base prompt
            pool = df[(df["method"] == "original") & (df["variant"] == "") & df["probe"].isna()]
        twin = pool[(pool[key] == hit[key]).all(axis=1)]
        if len(twin):
            out.append((hit, twin.iloc[0]))
        if len(out) >= MAX_EXAMPLES:
            break
    return out


def examples_figure(section):
    from PIL import Image

    pairs = _examples(section.curves["run"], section.curves["table"])
    if not pairs:
        return None
    fig = new_figure(2.0 * len(pairs), 4.4)
    axes = fig.subplots(2, len(pairs), squeeze=False)
    for j, (hit, twin) in enumerate(pairs):
        for i, (row, label) in enumerate(((twin, "original"), (hit, f"{hit['probe_arm']}\n{hit['probe']}"))):
            ax = axes[i][j]
            with Image.open(section.curves["run"].path / str(row["image_path"])) as im:
                ax.imshow(im.convert("RGB"))
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(text(label), fontsize=7)
        drawn = hit.get("attack_prompt")
        prompt = drawn if isinstance(drawn, str) and drawn else hit["prompt"]
        axes[1][j].set_xlabel(text(prompt[:40]), fontsize=6)
    return fig


def robustness_figures(section, prefix: str) -> list[tuple]:
    """(name, title, figure, caption) of the section's figures."""
    if section.kind not in ("text", "embedding", "image"):
        return []
    specs = [("heatmap", f"{section.title}: attack success", success_heatmap(section),
              "Attack success (%) pooled over the erased concepts, per arm (rows; the original model first, "
              "the control) and probe (columns); the first column is the plain target prompts."),
             ("examples", f"{section.title}: successful attacks", examples_figure(section),
              "Successful attacks (bottom: the arm's image, its probe and the prompt it was drawn from) beside "
              "the original model's image of the same prompt and seed (top; an optimised attack's: its base "
              "prompt's plain image).")]
    return [(f"{prefix}-{name}", title, fig, caption) for name, title, fig, caption in specs if fig is not None]
