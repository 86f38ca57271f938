"""Model families PSG guides, each behind one small interface (families.base.Family): UNet (SD1.x, SD2.x,
SDXL), Flux.1, Flux.2, Chroma, SD3 / SD3.5, Qwen-Image and Z-Image. `family_of` picks one from the MODEL; the
engine never asks which."""

from __future__ import annotations

from . import chroma, flux, flux2, qwen_image, sd3, unet, z_image
from .base import Family

SUPPORTED = ("SD1.x, SD2.x, SDXL (UNet cross-attention), Flux.1 dev / schnell, Flux.2 dev / klein, Chroma, "
             "SD3 / SD3.5 medium / large, Qwen-Image and Z-Image (joint attention)")
DETECTORS = (unet.detect, flux.detect, flux2.detect, chroma.detect, sd3.detect, qwen_image.detect, z_image.detect)


def family_of(model) -> Family:
    """The family of a MODEL, or ValueError naming what PoS Guidance supports."""
    for detect in DETECTORS:
        family = detect(model)
        if family is not None:
            return family
    inner = getattr(model, "model", None)
    name = type(getattr(inner, "diffusion_model", inner)).__name__
    raise ValueError(f"PoS Guidance works on {SUPPORTED}; this model is {type(inner).__name__} ({name}), which it "
                     "cannot guide.")
