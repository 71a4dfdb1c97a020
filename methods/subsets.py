"""Parameter subsets: the one vocabulary every erasure method uses to name what it trains.

A subset is written as one word, or several joined by ``+`` (their union). The same word selects
the same parameters whichever method reads it, so a study can move one subset across methods
(``--variant xattn`` trains the same tensors in ga, fmn and ca). Words of the UNet:

  full            every UNet parameter
  xattn           every cross-attention projection: ``attn2.{to_q,to_k,to_v,to_out.0}``
  xattn-kv        the cross-attention keys and values only: ``attn2.{to_k,to_v}``
  attn            every attention projection, self (``attn1``) and cross (``attn2``) alike
  non-xattn       every Linear and Conv2d outside cross-attention, except the time embedding and
                  the output layers (``time_embedding``, ``conv_norm_out``, ``conv_out``): ESD-u's set

Words of the text encoder (a CLIP text transformer), all starting with ``te-``:

  te-all              every text-encoder parameter
  te-mlp              every layer's MLP (``mlp.fc1``, ``mlp.fc2``)
  te-attn             every layer's self-attention (``self_attn.{q,k,v,out}_proj``)
  te-final-attn       the last layer's self-attention
  te-embeddings       the token and position embeddings
  te-non-embeddings   everything but the embeddings: every layer and the final layer norm
  te-layer<N>         every parameter of layer N (0-based), e.g. ``te-layer0``
  te-layer<N>-mlp     layer N's MLP;  ``te-layer<N>-attn``: layer N's self-attention

so fewshot-te's default ``te-mlp+te-final-attn`` is every MLP plus the last self-attention.

A method trains its config's ``params`` when it has one, else its class's ``subset``, in the words
of its ``component`` (``ErasureMethod.trainable`` in methods/base.py): esd-x ``xattn``,
esd-x-strict ``xattn-kv``, esd-u ``non-xattn``, uce ``xattn-kv`` (the weights), salun ``full``,
advunlearn ``te-non-embeddings``; ga, fmn and ca take any UNet subset as ``--variant`` and
fewshot-te any text-encoder one. Names from before this vocabulary still work (UNet: ``attn2``,
``kv``; text encoder: ``all``, ``mlp``, ``attn``, ``mlp+attn``, ``mlp+final-attn``,
``layers=[i,...]``, ``KIND:layers=[i,...]``) and log a one-line note naming the words to write.

    from methods.subsets import select
    select(pipe, "xattn-kv", "unet", method="ca")   # ['unet.down_blocks.0...attn2.to_k.weight', ...]
    select(pipe, "te-layer0-mlp+te-final-attn", "text_encoder")

Names come out in the component's own parameter order (``named_parameters``), whatever the order
of the words, so an optimiser sees the same parameter list for the same subset.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Callable

from bench.core.errors import EraselabError, suggest

UNET, TEXT_ENCODER = "unet", "text_encoder"
COMPONENT_NAMES = {UNET: "UNet", TEXT_ENCODER: "text-encoder"}
log = logging.getLogger("eraselab.methods")


@dataclass(frozen=True)
class Param:
    """One parameter as the predicates see it: its name in the component, the name and type of
    the module that owns it, and (text encoder) its layer index, block and the last layer's index."""

    name: str
    module: str
    module_type: type
    layer: int | None = None
    block: str | None = None
    last_layer: int | None = None


def _is(p: Param, *kinds: str) -> bool:
    import torch
    return issubclass(p.module_type, tuple(getattr(torch.nn, k) for k in kinds))


_ATTN2 = re.compile(r"\.attn2\.(to_q|to_k|to_v|to_out)(\.|$)")
_ATTN2_KV = re.compile(r"\.attn2\.(to_k|to_v)(\.|$)")
_ATTN = re.compile(r"\.attn[12]\.(to_q|to_k|to_v|to_out)(\.|$)")
_NON_XATTN_EXCLUDED = ("time_embedding", "conv_norm_out", "conv_out")

# word -> (component, predicate). The layer words (te-layer<N>...) are parsed, not listed.
WORDS: dict[str, tuple[str, Callable[[Param], bool]]] = {
    "full": (UNET, lambda p: True),
    "xattn": (UNET, lambda p: _is(p, "Linear") and bool(_ATTN2.search("." + p.module))),
    "xattn-kv": (UNET, lambda p: _is(p, "Linear") and bool(_ATTN2_KV.search("." + p.module))),
    "attn": (UNET, lambda p: _is(p, "Linear") and bool(_ATTN.search("." + p.module))),
    "non-xattn": (UNET, lambda p: _is(p, "Linear", "Conv2d") and "attn2" not in p.module
                  and not p.module.startswith(_NON_XATTN_EXCLUDED)),
    "te-all": (TEXT_ENCODER, lambda p: True),
    "te-mlp": (TEXT_ENCODER, lambda p: p.block == "mlp"),
    "te-attn": (TEXT_ENCODER, lambda p: p.block == "self_attn"),
    "te-final-attn": (TEXT_ENCODER, lambda p: p.block == "self_attn" and p.layer == p.last_layer),
    "te-embeddings": (TEXT_ENCODER, lambda p: bool(re.search(r"(^|\.)embeddings\.", p.name))),
    "te-non-embeddings": (TEXT_ENCODER,
                          lambda p: ".layers." in f".{p.name}" or "final_layer_norm" in p.name),
}
_LAYER_WORD = re.compile(r"te-layer(\d+)(?:-(mlp|attn))?$")
_LAYER_BLOCK = {None: None, "mlp": "mlp", "attn": "self_attn"}
_LAYER_PARAM = re.compile(r"(?:^|\.)layers\.(\d+)\.(\w+)\.")
LAYER_WORDS = ("te-layer<N>", "te-layer<N>-mlp", "te-layer<N>-attn")

# Names from before the shared vocabulary, per component: old name -> the words it meant.
ALIASES: dict[str, dict[str, str]] = {
    UNET: {"attn2": "xattn", "kv": "xattn-kv"},
    TEXT_ENCODER: {"all": "te-all", "mlp": "te-mlp", "attn": "te-attn", "mlp+attn": "te-mlp+te-attn",
                   "mlp+final-attn": "te-mlp+te-final-attn"},
}
# fewshot-te's old KIND:layers=[i,...], per layer i ("mlp+final-attn" needs the layer count)
_OLD_KIND_LAYER = {"all": "te-layer{0}", "mlp": "te-layer{0}-mlp", "attn": "te-layer{0}-attn",
                   "mlp+attn": "te-layer{0}-mlp+te-layer{0}-attn"}
_noted: set = set()  # (component, old name) pairs already noted in this process


class SubsetError(ValueError):
    """A spec that names no subset of the component (the message says why, in one line)."""


def words(component: str) -> list[str]:
    """The words of one component, in the order the module docstring lists them."""
    return [w for w, (comp, _) in WORDS.items() if comp == component] + \
        (list(LAYER_WORDS) if component == TEXT_ENCODER else [])


def _word_problem(word: str, component: str) -> str | None:
    """Why ``word`` is not a word of ``component`` (None: it is one)."""
    if word in WORDS:
        if WORDS[word][0] == component:
            return None
        hint = f"te-{word}" if component == TEXT_ENCODER and f"te-{word}" in WORDS else None
        return (f"{word!r} is a {COMPONENT_NAMES[WORDS[word][0]]} subset and this method trains the "
                f"{COMPONENT_NAMES[component]}" + (f"; did you mean {hint!r}?" if hint else ""))
    if _LAYER_WORD.match(word):
        return None if component == TEXT_ENCODER else \
            f"{word!r} is a text-encoder subset and this method trains the UNet"
    hint = suggest(word, words(component), fallback=False)
    hint = f"; {hint}" if hint else f"; expected {' | '.join(words(component))} (joined by '+')"
    return f"unknown {COMPONENT_NAMES[component]} subset {word!r}{hint}"


def _parse_old_layers(spec: str) -> tuple[str, tuple[int, ...]] | None:
    """fewshot-te's old ``layers=[i,...]`` / ``KIND:layers=[i,...]`` -> (KIND, layers), else None."""
    if "layers=" not in spec and ":" not in spec:
        return None
    import yaml

    from bench.core.yamlio import safe_load_text  # alias expansion bounded: the spec is user input
    kind, layers = None, None
    for part in (p.strip() for p in spec.split(":")):
        if part.startswith("layers="):
            try:
                value = safe_load_text(part[len("layers="):])
            except yaml.YAMLError:
                value = None
            if isinstance(value, int) and not isinstance(value, bool):
                value = [value]
            if not isinstance(value, list) or not value or not all(
                    isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in value):
                raise SubsetError(f"bad layer list in {spec[:200]!r}; write layers=[0,1], or the words "
                                  f"te-layer0+te-layer1")
            layers = tuple(sorted(set(value)))
        elif part in ALIASES[TEXT_ENCODER] and kind is None:
            kind = part
        else:
            raise SubsetError(f"unknown parameter subset {spec!r}; expected "
                              f"{' | '.join(words(TEXT_ENCODER))} (joined by '+')")
    if layers is None:
        raise SubsetError(f"{spec!r} names no layers; write KIND:layers=[i,...]")
    return kind or "all", layers


def _translate(spec: str, component: str, last_layer: int | None) -> str | None:
    """The shared words an old name meant; None if ``spec`` is not an old name. An old
    ``mlp+final-attn:layers=[...]`` without ``last_layer`` gives ``spec`` back unchanged."""
    if spec in ALIASES[component]:
        return ALIASES[component][spec]
    old = _parse_old_layers(spec) if component == TEXT_ENCODER else None
    if old is None:
        return None
    kind, layers = old
    if kind != "mlp+final-attn":
        return "+".join(_OLD_KIND_LAYER[kind].format(i) for i in layers)
    if last_layer is None:
        return spec
    return "+".join([f"te-layer{i}-mlp" for i in layers] + (["te-final-attn"] if last_layer in layers else []))


def canonical(spec: str, component: str, method: str = "", last_layer: int | None = None,
              note: bool = True) -> str:
    """``spec`` in the shared words: an old name is translated, with a one-line note (once per
    process; ``note=False``: none) naming the words to write; a spec that names no subset of
    ``component`` raises ``SubsetError``. ``last_layer`` (the text encoder's) is needed only by
    the old ``mlp+final-attn:layers=[...]``, which is given back as it is without it."""
    if not isinstance(spec, str) or not spec.strip():
        raise SubsetError(f"empty parameter subset; expected {' | '.join(words(component))}")
    spec = spec.strip()
    new = _translate(spec, component, last_layer)
    if new == spec:
        return spec  # checked; translated once the layer count is known
    if new is not None:
        if note and (component, spec) not in _noted:
            _noted.add((component, spec))
            log.warning("%sparameter subset %r is an old name; write %r (methods/subsets.py)",
                        f"{method}: " if method else "", spec, new)
        spec = new
    for word in spec.split("+"):
        problem = _word_problem(word.strip(), component)
        if problem:
            raise SubsetError(problem)
    return spec


def check(spec: str, component: str) -> str | None:
    """For a Config's ``check``: the problem with ``spec`` in one line, or None (the note on an
    old name comes when the method selects its parameters, naming the method)."""
    try:
        canonical(spec, component, note=False)
    except SubsetError as exc:
        return f"key 'params': {exc}"
    return None


def _params(module, component: str) -> list[Param]:
    owners = {}
    for mname, mod in module.named_modules():
        for pname, _ in mod.named_parameters(recurse=False):
            owners[f"{mname}.{pname}" if mname else pname] = (mname, type(mod))
    last = int(module.config.num_hidden_layers) - 1 if component == TEXT_ENCODER else None
    out = []
    for name, _ in module.named_parameters():
        mname, mtype = owners[name]
        m = _LAYER_PARAM.search(name) if component == TEXT_ENCODER else None
        out.append(Param(name, mname, mtype, int(m.group(1)) if m else None,
                         m.group(2) if m else None, last))
    return out


def _predicate(word: str, n_layers: int | None) -> Callable[[Param], bool]:
    if word in WORDS:
        return WORDS[word][1]
    m = _LAYER_WORD.match(word)
    layer, block = int(m.group(1)), _LAYER_BLOCK[m.group(2)]
    if n_layers is not None and layer >= n_layers:
        raise SubsetError(f"layer {layer} in {word!r} does not exist (the text encoder has layers "
                          f"0..{n_layers - 1})")
    return lambda p: p.layer == layer and (block is None or p.block == block)


def select(pipe, spec: str, component: str, method: str = "") -> list[str]:
    """Qualified names (``unet.<param>`` / ``text_encoder.<param>``) of the parameters ``spec``
    names, in the component's parameter order. A bad spec, or one that selects nothing, is a
    one-line EraselabError naming the method."""
    module = getattr(pipe, component)
    n_layers = int(module.config.num_hidden_layers) if component == TEXT_ENCODER else None
    try:
        spec = canonical(spec, component, method, last_layer=n_layers - 1 if n_layers else None)
        predicates = [_predicate(w.strip(), n_layers) for w in spec.split("+")]
    except SubsetError as exc:
        raise EraselabError(f"{method or 'eraselab'}: {exc}") from None
    out = [f"{component}.{p.name}" for p in _params(module, component) if any(f(p) for f in predicates)]
    if not out:
        raise EraselabError(f"{method or 'eraselab'}: subset {spec!r} matches no "
                            f"{COMPONENT_NAMES[component]} parameter")
    return out
