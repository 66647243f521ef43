"""polyiap: transfer an English text-to-image diffusion model to another language by training a new
text encoder with the images-as-pivots (IAP) objective."""

__version__ = "0.1.0"
