"""The samplers a suite may name (``sampler.scheduler``) and swapping one into a pipeline.

    from bench.samplers import set_scheduler
    set_scheduler(pipe, "dpm")      # DPM-Solver++ (multistep), built from the pipeline's own config

"default" keeps the scheduler the model ships with. The names are a suite's vocabulary, so
validating a suite reads them without importing diffusers.
"""

from __future__ import annotations

SCHEDULER_CLASSES = {"pndm": "PNDMScheduler", "ddim": "DDIMScheduler",
                     "dpm": "DPMSolverMultistepScheduler", "unipc": "UniPCMultistepScheduler",
                     "euler": "EulerDiscreteScheduler", "euler-a": "EulerAncestralDiscreteScheduler",
                     "lms": "LMSDiscreteScheduler"}


def set_scheduler(pipe, name: str) -> None:
    """Replace the pipeline's scheduler by ``name`` (SCHEDULER_CLASSES), built from its config."""
    if name == "default":
        return
    import diffusers

    cls = getattr(diffusers, SCHEDULER_CLASSES[name])
    kwargs = {"skip_prk_steps": True} if name == "pndm" else {}  # as SD 1.x ships PNDM
    pipe.scheduler = cls.from_config(pipe.scheduler.config, **kwargs)
