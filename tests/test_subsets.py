"""The shared parameter-subset vocabulary (methods/subsets.py) on the tiny pipeline.

Each old subset name selects exactly the parameters its method selected before the vocabulary
(the old rules are written out below as they were, as the oracle); one word selects the same
parameters in every method; an old name logs one note naming the word to write; a bad word is a
one-line error that says what was expected.

    python -m pytest tests/test_subsets.py -q
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys

import pytest
import torch

from bench.core.errors import EraselabError
from bench.tiny import tiny_pipeline
from methods import METHODS, subsets
from methods.erase import resolve_method_config
from methods.subsets import TEXT_ENCODER, UNET, canonical, select

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipeline()


# --- the selection rules as each method wrote them before methods/subsets.py ------------------
def _old_unet_modules(unet, predicate, kinds=(torch.nn.Linear, torch.nn.Conv2d)):
    out = []
    for mname, module in unet.named_modules():
        if isinstance(module, kinds) and predicate(mname):
            out.extend(f"unet.{mname}.{p}" for p, _ in module.named_parameters(recurse=False))
    return out


def _old_attn2(unet, projections=("to_q", "to_k", "to_v", "to_out")):
    pat = re.compile(r"\.attn2\.(" + "|".join(projections) + r")(\.|$)")
    return _old_unet_modules(unet, lambda m: bool(pat.search("." + m)), kinds=(torch.nn.Linear,))


def _old_ca_attn(unet):
    pat = re.compile(r"\.attn[12]\.(to_q|to_k|to_v|to_out)(\.|$)")
    return _old_unet_modules(unet, lambda m: bool(pat.search("." + m)), kinds=(torch.nn.Linear,))


def _old_esd_u(unet):
    excluded = ("time_embedding", "conv_norm_out", "conv_out")
    return _old_unet_modules(unet, lambda m: "attn2" not in m and not m.startswith(excluded))


def _old_full(unet):
    return [f"unet.{n}" for n, _ in unet.named_parameters()]


def _old_fewshot(te, kind, layers=None):
    last = te.config.num_hidden_layers - 1
    out = []
    for name, _ in te.named_parameters():
        m = re.search(r"(?:^|\.)layers\.(\d+)\.(\w+)\.", name)
        layer, block = (int(m.group(1)), m.group(2)) if m else (None, None)
        if layers is not None and layer not in layers:
            continue
        if {"all": True, "mlp": block == "mlp", "attn": block == "self_attn",
                "mlp+attn": block in ("mlp", "self_attn"),
                "mlp+final-attn": block == "mlp" or (block == "self_attn" and layer == last)}[kind]:
            out.append(f"text_encoder.{name}")
    return out


OLD = {  # (method, variant as the old code spelled it) -> the old rule
    ("esd-x", None): lambda p: _old_attn2(p.unet),
    ("esd-x-strict", None): lambda p: _old_attn2(p.unet, ("to_k", "to_v")),
    ("esd-u", None): lambda p: _old_esd_u(p.unet),
    ("esd-x", "full"): lambda p: _old_full(p.unet),      # ESD's objective on another subset
    ("esd-u", "xattn"): lambda p: _old_attn2(p.unet),
    ("uce", None): lambda p: [n for n in _old_attn2(p.unet, ("to_k", "to_v")) if n.endswith(".weight")],
    ("rece", None): lambda p: [n for n in _old_attn2(p.unet, ("to_k", "to_v")) if n.endswith(".weight")],
    ("sdd", None): lambda p: _old_attn2(p.unet),
    ("sdd", "full"): lambda p: _old_full(p.unet),
    ("ant", None): lambda p: _old_full(p.unet),
    ("ant", "xattn"): lambda p: _old_attn2(p.unet),
    ("advanchor", None): lambda p: _old_attn2(p.unet),
    ("erasediff", None): lambda p: _old_full(p.unet),
    ("erasediff", "xattn"): lambda p: _old_attn2(p.unet),
    ("scissorhands", None): lambda p: _old_full(p.unet),
    ("selective-amnesia", None): lambda p: _old_full(p.unet),
    ("selective-amnesia", "xattn"): lambda p: _old_attn2(p.unet),
    ("stereo", None): lambda p: _old_esd_u(p.unet),
    ("stereo", "xattn"): lambda p: _old_attn2(p.unet),
    ("trce", None): lambda p: [n for n in _old_ca_attn(p.unet) if ".attn1." in n or ".attn2.to_q." in n
                               or (re.search(r"\.attn2\.to_[kv]\.weight$", n) is not None)],
    ("mace", None): lambda p: [n for n in _old_attn2(p.unet, ("to_k", "to_v")) if n.endswith(".weight")],
    ("ca", None): lambda p: _old_attn2(p.unet, ("to_k", "to_v")),
    ("ca", "kv"): lambda p: _old_attn2(p.unet, ("to_k", "to_v")),
    ("ca", "attn"): lambda p: _old_ca_attn(p.unet),
    ("ca", "full"): lambda p: _old_full(p.unet),
    ("fmn", None): lambda p: _old_full(p.unet),
    ("fmn", "full"): lambda p: _old_full(p.unet),
    ("fmn", "attn2"): lambda p: _old_attn2(p.unet),
    ("ga", None): lambda p: _old_full(p.unet),
    ("ga", "full"): lambda p: _old_full(p.unet),
    ("ga", "xattn"): lambda p: _old_attn2(p.unet),
    ("salun", None): lambda p: _old_full(p.unet),
    ("advunlearn", None): lambda p: [f"text_encoder.{n}" for n, _ in p.text_encoder.named_parameters()
                                     if ".layers." in f".{n}" or "final_layer_norm" in n],
    ("fewshot-te", None): lambda p: _old_fewshot(p.text_encoder, "mlp+final-attn"),
    **{("fewshot-te", kind): (lambda k: lambda p: _old_fewshot(p.text_encoder, k))(kind)
       for kind in ("all", "mlp", "attn", "mlp+attn", "mlp+final-attn")},
    ("fewshot-te", "layers=[0,2]"): lambda p: _old_fewshot(p.text_encoder, "all", (0, 2)),
    ("fewshot-te", "mlp:layers=[1]"): lambda p: _old_fewshot(p.text_encoder, "mlp", (1,)),
    ("fewshot-te", "attn:layers=[0]"): lambda p: _old_fewshot(p.text_encoder, "attn", (0,)),
    ("fewshot-te", "mlp+attn:layers=[2]"): lambda p: _old_fewshot(p.text_encoder, "mlp+attn", (2,)),
    ("fewshot-te", "mlp+final-attn:layers=[1,2]"): lambda p: _old_fewshot(p.text_encoder, "mlp+final-attn", (1, 2)),
    ("fewshot-te", "mlp+final-attn:layers=[0]"): lambda p: _old_fewshot(p.text_encoder, "mlp+final-attn", (0,)),
}


@pytest.mark.parametrize("method,variant", sorted(OLD, key=str), ids=lambda v: str(v))
def test_old_names_select_exactly_what_they_did(pipe, method, variant):
    cls = METHODS.get(method)
    config = resolve_method_config(cls, "mini", variant)
    ours = cls().trainable(pipe, config)
    old = OLD[(method, variant)](pipe)
    assert old and ours == old  # same names, same order (the optimiser's parameter list)


def test_every_weight_method_is_covered_by_the_oracle():
    weight_methods = {n for n in METHODS.names()
                      if METHODS.get(n).subset or "params" in METHODS.get(n).Config.__dataclass_fields__}
    assert weight_methods == {m for m, _ in OLD}


@pytest.mark.parametrize("old,new,component", [
    ("kv", "xattn-kv", UNET), ("attn2", "xattn", UNET),
    ("all", "te-all", TEXT_ENCODER), ("mlp", "te-mlp", TEXT_ENCODER), ("attn", "te-attn", TEXT_ENCODER),
    ("mlp+attn", "te-mlp+te-attn", TEXT_ENCODER), ("mlp+final-attn", "te-mlp+te-final-attn", TEXT_ENCODER),
    ("layers=[0,2]", "te-layer0+te-layer2", TEXT_ENCODER), ("mlp:layers=[1]", "te-layer1-mlp", TEXT_ENCODER),
])
def test_an_old_name_is_the_new_words_with_one_note(pipe, old, new, component, caplog, monkeypatch):
    monkeypatch.setattr(subsets, "_noted", set())
    with caplog.at_level(logging.WARNING, logger="eraselab.methods"):
        assert select(pipe, old, component, "m") == select(pipe, new, component, "m")
        select(pipe, old, component, "m")
    notes = [r.getMessage() for r in caplog.records]
    assert notes == [f"m: parameter subset {old!r} is an old name; write {new!r} (methods/subsets.py)"]
    assert canonical(new, component) == new


def test_one_word_selects_the_same_parameters_in_every_method(pipe):
    def trains(method, variant=None):
        cls = METHODS.get(method)
        return cls().trainable(pipe, resolve_method_config(cls, "mini", variant))

    assert trains("ga", "xattn") == trains("fmn", "xattn") == trains("ca", "xattn") == trains("esd-x")
    assert trains("ga", "xattn-kv") == trains("fmn", "xattn-kv") == trains("ca") == trains("esd-x-strict")
    assert trains("uce") == [n for n in trains("esd-x-strict") if n.endswith(".weight")]
    assert trains("ga", "non-xattn") == trains("esd-u")
    assert trains("ga") == trains("fmn") == trains("salun") == trains("esd-x", "full") == select(pipe, "full", UNET)
    assert trains("advunlearn") == select(pipe, "te-non-embeddings", TEXT_ENCODER)


def test_words_partition_and_unions(pipe):
    full, xattn, non = (set(select(pipe, w, UNET)) for w in ("full", "xattn", "non-xattn"))
    assert xattn and non and not xattn & non and xattn | non < full
    kv = set(select(pipe, "xattn-kv", UNET))
    assert kv < xattn < set(select(pipe, "attn", UNET))
    te = select(pipe, "te-all", TEXT_ENCODER)
    emb, rest = select(pipe, "te-embeddings", TEXT_ENCODER), select(pipe, "te-non-embeddings", TEXT_ENCODER)
    assert sorted(emb + rest) == sorted(te) and emb and not set(emb) & set(rest)
    # a union comes out in the component's parameter order whatever the order of its words
    assert select(pipe, "te-final-attn+te-mlp", TEXT_ENCODER) == select(pipe, "te-mlp+te-final-attn", TEXT_ENCODER)
    assert set(select(pipe, "xattn+non-xattn", UNET)) == xattn | non
    per_layer = [set(select(pipe, f"te-layer{i}", TEXT_ENCODER)) for i in range(3)]
    assert set().union(*per_layer) == {n for n in rest if "final_layer_norm" not in n}
    assert set(select(pipe, "te-layer1-mlp+te-layer1-attn", TEXT_ENCODER)) < per_layer[1]
    assert set(select(pipe, "te-layer2-attn", TEXT_ENCODER)) == set(select(pipe, "te-final-attn", TEXT_ENCODER))


@pytest.mark.parametrize("spec,component,message", [
    ("xatn", UNET, "m: unknown UNet subset 'xatn'; did you mean 'xattn'"),
    ("te-mlp", UNET, "m: 'te-mlp' is a text-encoder subset and this method trains the UNet"),
    ("te-layer0", UNET, "m: 'te-layer0' is a text-encoder subset and this method trains the UNet"),
    ("te-mlp+attn", TEXT_ENCODER, "'attn' is a UNet subset and this method trains the text-encoder; did you "
                                  "mean 'te-attn'?"),
    ("te-layer7", TEXT_ENCODER, "m: layer 7 in 'te-layer7' does not exist (the text encoder has layers 0..2)"),
    ("layers=[1", TEXT_ENCODER, "bad layer list"),
    ("", UNET, "m: empty parameter subset; expected full | xattn"),
])
def test_bad_subsets_are_one_line_errors(pipe, spec, component, message):
    with pytest.raises(EraselabError) as info:
        select(pipe, spec, component, "m")
    assert message in str(info.value) and "\n" not in str(info.value)


def test_bad_variant_through_the_config_names_method_and_key():
    with pytest.raises(EraselabError, match=r"^ga: key 'params': unknown UNet subset 'xatn'; did you mean"):
        resolve_method_config(METHODS.get("ga"), "mini", "xatn")
    with pytest.raises(EraselabError, match=r"^ca: key 'params': 'te-all' is a text-encoder subset"):
        resolve_method_config(METHODS.get("ca"), "mini", overrides={"params": "te-all"})


def test_the_vocabulary_imports_no_torch():
    code = ("import sys; import methods.subsets as s; s.canonical('kv', 'unet'); "
            "s.check('te-layer3-mlp', 'text_encoder'); assert 'torch' not in sys.modules")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
