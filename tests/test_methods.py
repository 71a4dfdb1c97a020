"""The method battery: every registered erasure method through the same checks on the tiny pipeline.

The methods come from the registry (``METHODS.names()``), with each one's ``quick_overrides``; a
new method is tested by registering it. For each method: it changes only the tensors it claims (everything else bit-identical), two runs
with one seed give identical deltas, the saved delta reloads to the same generated image, and bad
input (unknown concept, unknown or ill-typed config key, empty / unreadable / non-image few-shot
folder) is a one-line EraselabError that writes nothing and leaves the pipeline as it was.

    python -m pytest tests/test_methods.py -q
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bench.core.errors import EraselabError
from bench.tiny import tiny_pipeline
from methods import METHODS
from methods.delta import EDIT_FILE, load_edit, named_tensors
from methods.erase import erase

torch.set_num_threads(1)  # tiny models: threads only add contention on a shared 2-core machine

# Each method's ``quick_overrides`` (tiny step counts): the battery checks contracts, not erasure.
CONCEPT = "snoopy"


def write_images(folder, n=4, size=(20, 24)):
    from PIL import Image
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(0)
    for i in range(n):
        Image.fromarray((rng.rand(size[1], size[0], 3) * 255).astype("uint8")).save(folder / f"{i}.png")
    return folder


@pytest.fixture(scope="module")
def images_dir(tmp_path_factory):
    return write_images(tmp_path_factory.mktemp("fewshot"))


@pytest.fixture(scope="module")
def base_tensors():
    return {n: t.detach().clone() for n, t in named_tensors(tiny_pipeline()).items()}


def run(name, images_dir, **kw):
    cls = METHODS.get(name)
    kw.setdefault("overrides", dict(cls.quick_overrides))
    return erase(tiny_pipeline(), name, kw.pop("concept", CONCEPT),
                 images_dir=images_dir if cls.needs_images else None, seed=0, progress=False, **kw)


def image(pipe, prompt="a photo of snoopy"):
    return pipe(prompt, num_inference_steps=2, generator=torch.Generator().manual_seed(0),
                output_type="np").images


@pytest.mark.parametrize("name", METHODS.names())
def test_method_contract(name, images_dir, base_tensors, tmp_path):
    cls = METHODS.get(name)
    first = run(name, images_dir)
    pipe = first.pipeline
    tensors = named_tensors(getattr(pipe, "eraselab_inner", pipe))
    changed = {n for n, t in tensors.items() if not torch.equal(t.detach(), base_tensors[n])}
    claimed = set(cls().trainable(tiny_pipeline(), first_config(first)))
    # edits only what it claims; the delta is exactly the changed tensors
    assert changed <= claimed, sorted(changed - claimed)[:5]
    assert set(first.delta) == changed
    if not claimed:  # inference-time methods and the original model change no weight by design
        assert not changed
    else:
        assert changed, f"{name} changed nothing"
    assert first.params_changed == sum(int((tensors[n] != base_tensors[n]).sum()) for n in changed)

    # deterministic under a seed
    second = run(name, images_dir)
    assert set(second.delta) == set(first.delta)
    for n in first.delta:
        assert torch.equal(first.delta[n], second.delta[n]), n

    # saves and reloads to the same outputs
    out = first.save(tmp_path / "edit")
    record = json.loads((out / EDIT_FILE).read_text())
    for key in ("method", "method_version", "config", "concept", "base", "seconds",
                "peak_memory_mb", "params_changed"):
        assert key in record
    assert record["method"] == name and record["concept"] == CONCEPT
    reloaded = load_edit(tiny_pipeline(), out)
    assert np.array_equal(image(first.pipeline), image(reloaded))
    if cls.inference_time:  # the guidance wrapper must actually change sampling
        assert not np.array_equal(image(first.pipeline), image(tiny_pipeline()))


def first_config(result):
    from methods.erase import resolve_method_config
    cls = METHODS.get(result.record["method"])
    return resolve_method_config(cls, result.record["family"], overrides=result.record["config"])


def bad_inputs(name, tmp_path):
    cases = [("unknown concept", dict(concept="no such concept")),
             ("unknown key", dict(overrides={"no_such_key": 1})),
             ("ill-typed", dict(overrides={"lr": "fast"} if "lr" in _fields(name) else
                                {"text": 3} if "text" in _fields(name) else {"x": 1}))]
    if METHODS.get(name).needs_images:
        empty = tmp_path / "empty"
        empty.mkdir()
        broken = write_images(tmp_path / "broken", n=2)
        (broken / "2.png").write_bytes(b"not really a png")
        textfile = write_images(tmp_path / "text", n=2)
        (textfile / "notes.txt").write_text("hello")
        cases += [("empty folder", dict(images_dir=empty, expect=str(empty))),
                  ("unreadable image", dict(images_dir=broken, expect="2.png")),
                  ("non-image file", dict(images_dir=textfile, expect="notes.txt"))]
    return cases


def _fields(name):
    import dataclasses
    return {f.name for f in dataclasses.fields(METHODS.get(name).Config)}


@pytest.mark.parametrize("name", METHODS.names())
def test_method_rejects_bad_input(name, images_dir, base_tensors, tmp_path):
    cls = METHODS.get(name)
    for label, case in bad_inputs(name, tmp_path):
        expect = case.pop("expect", None)
        out = tmp_path / f"out-{label.replace(' ', '-')}"
        pipe = tiny_pipeline()
        kwargs = dict(images_dir=case.pop("images_dir", images_dir if cls.needs_images else None),
                      overrides={**cls.quick_overrides, **case.pop("overrides", {})})
        with pytest.raises(EraselabError) as info:
            erase(pipe, name, case.pop("concept", CONCEPT), seed=0, progress=False, out_dir=out,
                  **kwargs)
        message = str(info.value)
        assert "\n" not in message, label
        if expect:
            assert expect in message, (label, message)
        assert not out.exists(), label
        for n, t in named_tensors(pipe).items():
            assert torch.equal(t.detach(), base_tensors[n]), (label, n)
