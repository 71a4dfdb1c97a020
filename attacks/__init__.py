"""Attacks and probes that try to bring an erased concept back, registered by name in ``ATTACKS``.

``TABLE`` below is the one place a built-in probe's name, class and one-line summary are written
(as methods/__init__.py does for erasure methods): ``eraselab ls attacks`` lists it without
importing torch, and the class it names learns its name when its module is imported. The
interface is attacks/base.py; the per-family budgets are attacks/defaults.py.
"""

from bench.core.registry import Registry, subclass_binder

ATTACKS = Registry("attack", bind=subclass_binder("attack", "attacks.base:Probe"))

# (name, "module:Class", summary): summaries say what the probe changes and what it needs
TABLE = (
    ("surface", "attacks.prompt_probes:SurfaceVariants", "prompt: the name in other case, spelling, spacing, punctuation"),
    ("unseen-templates", "attacks.prompt_probes:UnseenTemplates", "prompt: phrasings no evaluation or training template uses"),
    ("composition", "attacks.prompt_probes:Compositions", "prompt: the concept with a colour, a style or a scene"),
    ("description", "attacks.prompt_probes:Descriptions", "prompt: the catalog's description, never the name"),
    ("translation", "attacks.prompt_probes:Translations", "prompt: the catalog's names in other languages"),
    ("unlearndiff", "attacks.unlearndiff:UnlearnDiffAtk", "white-box text: k prefix tokens on the edited model's denoising loss"),
    ("soft-prompt", "attacks.soft_prompt:SoftPrompt", "white-box embedding: a continuous prefix token (AdvUnlearn's attack)"),
    ("p4d-n", "attacks.p4d:P4D", "white-box text: 16 free tokens matching the original model's prediction"),
    ("p4d-k", "attacks.p4d:P4DK", "white-box text: a token after every 3 of the prompt's, matching the original model"),
    ("concept-inversion", "attacks.inversion:ConceptInversion", "white-box embedding: textual inversion of a new token on the edited model"),
    ("inpainting", "attacks.inpainting:Inpainting", "non-text: the edited model fills the masked centre of concept images"),
    ("masked-context", "attacks.inpainting:MaskedContext", "non-text control: the masked concept images, unfilled"),
    ("noise", "attacks.noise:NoiseProbe", "non-text: best of N noisier DDIM draws by the evaluation CLIP (vs best-of-n)"),
    ("best-of-n", "attacks.noise:BestOfN", "non-text control: best of N plain DDIM draws by the same selector"),
    ("ring-a-bell", "attacks.ring_a_bell:RingABell", "black-box text: a genetic token search in the original text encoder's space"),
)

for _name, _target, _summary in TABLE:
    ATTACKS.register_lazy(_name, _target, summary=_summary)
del _name, _target, _summary
