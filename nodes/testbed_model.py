"""The effect testbed's checkpoint format (a narrow SD1-family UNet), known to ComfyUI's stock loader.

ComfyUI recognises a checkpoint by matching its UNet layout against `comfy.supported_models.models`;
SD1.5 requires 320 model channels, so the testbed's 64-channel UNet is added as its own SD1-family
entry (appended last, so it can never shadow a real model). Everything else is SD1.5's: eps
prediction, SD1's noise schedule and latent format, the SD1 CLIP-L text encoder.
"""

from __future__ import annotations

import comfy.supported_models as supported


class PoSTestbed(supported.SD15):
    """SD1.5 with 64 model channels and 4 heads: the pack's trained two-object testbed."""

    unet_config = {"context_dim": 768, "model_channels": 64, "use_linear_in_transformer": False,
                   "adm_in_channels": None, "use_temporal_attention": False}
    unet_extra_config = {"num_heads": 4, "num_head_channels": -1}


def register() -> None:
    """Append the testbed's entry once (idempotent across reloads of the pack)."""
    if not any(getattr(m, "__name__", "") == PoSTestbed.__name__ for m in supported.models):
        supported.models.append(PoSTestbed)
