"""Erasure methods, registered by name in ``METHODS`` (see methods/base.py for the interface).

``TABLE`` below is the one place a built-in method's name, class and one-line summary are
written: ``eraselab ls methods`` lists it without importing torch, and a class it names learns its
name when its module is imported (``ErasureMethod.__init_subclass__`` -> ``METHODS.fulfil``), so
the class carries neither a decorator nor a ``name``. A method defined elsewhere (a plugin, a
test) registers with ``@METHODS.register("my-method", summary="...")`` instead.
"""

from bench.core.registry import Registry, subclass_binder

METHODS = Registry("method", bind=subclass_binder("method", "methods.base:ErasureMethod"))

# (name, "module:Class", summary): summaries say what the method edits, in methods/subsets.py words
TABLE = (
    ("fewshot-te", "methods.fewshot_te:FewShotTE", "few-shot gradient ascent on the text encoder (seed paper)"),
    ("esd-x", "methods.esd:EsdX", "ESD, cross-attention (xattn)"),
    ("esd-x-strict", "methods.esd:EsdXStrict", "ESD, cross-attention keys and values (xattn-kv)"),
    ("esd-u", "methods.esd:EsdU", "ESD, everything but cross-attention (non-xattn)"),
    ("uce", "methods.uce:Uce", "Unified Concept Editing, closed form on xattn-kv"),
    ("ca", "methods.ca:ConceptAblation", "Concept Ablation (model-based, anchor concept)"),
    ("fmn", "methods.fmn:ForgetMeNot", "Forget-Me-Not attention re-steering"),
    ("ga", "methods.ga:GradientAscent", "gradient ascent on the UNet (full / xattn)"),
    ("salun", "methods.salun:SalUn", "Saliency Unlearning (masked UNet training)"),
    ("advunlearn", "methods.advunlearn:AdvUnlearn", "adversarial text-encoder unlearning"),
    ("rece", "methods.rece:Rece", "RECE: UCE then closed-form adversarial embeddings, xattn-kv"),
    ("conceptprune", "methods.conceptprune:ConceptPrune", "ConceptPrune: zero skilled ff.net.2 weights (training-free)"),
    ("adavd", "methods.adavd:AdaVd", "inference-time: AdaVD value projection in cross-attention"),
    ("sdd", "methods.sdd:Sdd", "SDD: self-distillation to the unconditional prediction, xattn, EMA teacher"),
    ("seot", "methods.seot:Seot", "inference-time: SuppressEOT soft-weighted suppression of prompt embeddings"),
    ("safree", "methods.safree:Safree", "inference-time: SAFREE trigger-token projection and FreeU (negative keywords a variant)"),
    ("ant", "methods.ant:Ant", "ANT: ESD keeping early-step guidance, saliency-masked full UNet"),
    ("advanchor", "methods.advanchor:AdvAnchor", "AdvAnchor: xattn mapped to an adversarially perturbed anchor"),
    ("erasediff", "methods.erasediff:EraseDiff", "EraseDiff: first-order bilevel forget/retain on the UNet"),
    ("scissorhands", "methods.scissorhands:Scissorhands", "Scissorhands: SNIP re-initialisation, then forget/retain repair"),
    ("selective-amnesia", "methods.selective_amnesia:SelectiveAmnesia", "Selective Amnesia: surrogate relabelling, replay and an EWC penalty on the UNet"),
    ("mace", "methods.mace:Mace", "MACE: closed-form refinement, masked-attention rank-1 LoRA and closed-form fusion, xattn-kv"),
    ("spm", "methods.spm:Spm", "SPM: rank-1 UNet adapters applied at sampling with a per-prompt gate"),
    ("receler", "methods.receler:Receler", "Receler: always-on erasers added after every attn2, trained against soft prompts"),
    ("spm-plain", "methods.spm:SpmPlain", "SPM's adapters merged into the UNet weights (no gate)"),
    ("trce", "methods.trce:Trce", "TRCE: closed form on the first end-of-text token (xattn-kv), then early-step contrastive attn1 + attn2.to_q"),
    ("concept-steerers", "methods.concept_steerers:ConceptSteerers", "inference-time: Concept Steerers, a k-SAE steering vector on a text-encoder layer"),
    ("negative-prompt", "methods.inference:NegativePrompt", "inference-time: the concept as negative prompt"),
    ("stereo", "methods.stereo:Stereo", "STEREO: erase/inversion rounds find adversarial tokens, then one compositional non-xattn erase"),
    ("sld", "methods.inference:Sld", "inference-time: Safe Latent Diffusion guidance (presets)"),
)

for _name, _target, _summary in TABLE:
    METHODS.register_lazy(_name, _target, summary=_summary)
del _name, _target, _summary
