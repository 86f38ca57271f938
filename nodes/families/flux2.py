"""Flux.2 (dev with its Mistral text encoder, klein 4B / 9B with Qwen3): the Flux.1 engine on Flux.2's blocks.

ComfyUI builds Flux.2 from Flux.1's model class with global modulation: the blocks carry no modulation of
their own and get it in `vec`, and the single blocks' MLP is a gated SiLU twice as wide; the out-of-place
copies of `families.flux` read both. Text is first in the joint sequence, as in Flux.1; Flux.2 dev's text is
left-padded to 512 tokens by the model (PoS Relations from Prompt binds the padded positions).
"""

from __future__ import annotations

from comfy.ldm.flux.model import Flux

from .base import Family
from .flux import FluxFamily, stock_blocks

# ConceptAttention's Flux.2 code reads concept maps from the last three of Flux.2 dev's 8 double blocks (a code
# default, not an ablation; nothing published for klein): the same relative depth on klein's 5 or 8
PUBLISHED_BLOCKS, PUBLISHED_DEPTH = [5, 6, 7], 8


class Flux2Family(FluxFamily):
    """Flux.2 dev / klein: maps from chosen double / single blocks; default the late double blocks."""

    name = "flux2"
    label = "Flux.2"
    published = (PUBLISHED_BLOCKS, PUBLISHED_DEPTH)


def detect(model) -> Family | None:
    """The Flux.2 family for a Flux.2 MODEL (ComfyUI 0.33+: model_base.Flux2), else None."""
    dm = getattr(model.model, "diffusion_model", None)
    if type(dm) is not Flux or type(model.model).__name__ != "Flux2" or not stock_blocks(dm):
        return None
    if not getattr(getattr(dm, "params", None), "global_modulation", False):
        return None
    return Flux2Family(model)
