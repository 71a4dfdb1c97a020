"""Erasure methods, registered by name in ``METHODS`` (see methods/base.py for the interface).

Each method module registers its classes with ``@METHODS.register(name)``; the lazy declarations
below let ``eraselab ls methods`` list them without importing torch.
"""

from bench.registry import Registry

METHODS = Registry("method")

_LAZY = [
    ("fewshot-te", "methods.fewshot_te:FewShotTE", "few-shot gradient ascent on the text encoder (seed paper)"),
    ("esd-x", "methods.esd:EsdX", "ESD, cross-attention (every attn2 Linear)"),
    ("esd-x-strict", "methods.esd:EsdXStrict", "ESD, attn2 to_k/to_v only"),
    ("esd-u", "methods.esd:EsdU", "ESD, everything but cross-attention"),
    ("uce", "methods.uce:Uce", "Unified Concept Editing, closed form on attn2 to_k/to_v"),
    ("ca", "methods.ca:ConceptAblation", "Concept Ablation (model-based, anchor concept)"),
    ("fmn", "methods.fmn:ForgetMeNot", "Forget-Me-Not attention re-steering"),
    ("ga", "methods.ga:GradientAscent", "gradient ascent on the UNet (full / xattn)"),
    ("salun", "methods.salun:SalUn", "Saliency Unlearning (masked UNet training)"),
    ("advunlearn", "methods.advunlearn:AdvUnlearn", "adversarial text-encoder unlearning"),
    ("negative-prompt", "methods.inference:NegativePrompt", "inference-time: the concept as negative prompt"),
    ("sld", "methods.inference:Sld", "inference-time: Safe Latent Diffusion guidance (presets)"),
    ("original", "methods.inference:Original", "no edit: the unchanged model (the reference line)"),
]

for _name, _target, _summary in _LAZY:
    METHODS.register_lazy(_name, _target, summary=_summary)
