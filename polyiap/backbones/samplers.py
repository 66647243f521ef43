"""Sampling schedulers by the names recipes use."""

from polyiap.registry import Registry

SAMPLERS: Registry[str] = Registry("sampler")
for _name, _class in {"pndm": "PNDMScheduler", "ddim": "DDIMScheduler", "euler": "EulerDiscreteScheduler",
                      "dpm++": "DPMSolverMultistepScheduler"}.items():
    SAMPLERS.register(_name)(_class)


def make_sampler(name: str, scheduler_config: dict):
    """Return the diffusers scheduler called ``name`` built on a backbone's noise schedule."""
    import diffusers

    config = dict(scheduler_config)
    if name == "pndm":
        # Stable Diffusion's own sampling setting: PNDM without the initial Runge-Kutta steps.
        config["skip_prk_steps"] = True
    if name == "ddim":
        config["clip_sample"] = False  # latents are not bounded to [-1, 1], unlike pixels
    return getattr(diffusers, SAMPLERS.get(name)).from_config(config)
