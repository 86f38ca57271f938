"""Model families PSG guides, each behind one small interface (families.base.Family): UNet (SD1.x, SD2.x,
SDXL), Flux.1 and SD3 / SD3.5. `family_of` picks one from the MODEL; the engine never asks which."""

from __future__ import annotations

from . import flux, sd3, unet
from .base import Family

SUPPORTED = "SD1.x, SD2.x, SDXL (UNet cross-attention), Flux.1 dev / schnell and SD3 / SD3.5 medium / large (joint attention)"


def family_of(model) -> Family:
    """The family of a MODEL, or ValueError naming what PoS Guidance supports."""
    for detect in (unet.detect, flux.detect, sd3.detect):
        family = detect(model)
        if family is not None:
            return family
    inner = getattr(model, "model", None)
    name = type(getattr(inner, "diffusion_model", inner)).__name__
    raise ValueError(f"PoS Guidance works on {SUPPORTED}; this model is {type(inner).__name__} ({name}), which it "
                     "cannot guide.")
