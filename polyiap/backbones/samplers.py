"""Sampling schedulers by the names recipes use."""

from polyiap.registry import Registry

SAMPLERS: Registry[str] = Registry("sampler")
for _name, _class in {"pndm": "PNDMScheduler", "ddim": "DDIMScheduler", "euler": "EulerDiscreteScheduler",
                      "dpm++": "DPMSolverMultistepScheduler"}.items():
    SAMPLERS.register(_name)(_class)


# Config values each sampler gets on top of the backbone's scheduler config.
SAMPLER_OVERRIDES = {
    "pndm": {"skip_prk_steps": True},  # Stable Diffusion's own sampling setting: no initial Runge-Kutta steps
    "ddim": {"clip_sample": False},  # latents are not bounded to [-1, 1], unlike pixels
}


def make_sampler(name: str, scheduler_config: dict):
    """Return the diffusers scheduler called ``name`` built on a backbone's noise schedule."""
    import diffusers

    config = {**scheduler_config, **SAMPLER_OVERRIDES.get(name, {})}
    return getattr(diffusers, SAMPLERS.get(name)).from_config(config)
