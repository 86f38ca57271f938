"""Chroma (Flux.1-schnell derived, T5 only): the Flux.1 engine on Chroma's blocks.

Chroma's blocks have no modulation of their own: an approximator computes every block's shift / scale /
gate, passed in `vec` (the out-of-place copies of `families.flux` read it there). ComfyUI 0.33 builds them
from Flux's block classes, 0.3.x from Chroma's own with the same layout. Text (T5, unpadded) is first.
"""

from __future__ import annotations

from .base import Family
from .flux import PUBLISHED_BLOCKS, PUBLISHED_DEPTH, FluxFamily, stock_blocks


def _block_classes() -> tuple[type, ...]:
    """The block classes ComfyUI builds Chroma from (0.33: Flux's; 0.3.x: Chroma's own, same layout)."""
    from comfy.ldm.flux import layers as flux_layers

    classes = [flux_layers.DoubleStreamBlock, flux_layers.SingleStreamBlock]
    try:
        from comfy.ldm.chroma import layers as chroma_layers
    except ImportError:
        return tuple(classes)
    return tuple(classes + [getattr(chroma_layers, n) for n in ("DoubleStreamBlock", "SingleStreamBlock")
                            if hasattr(chroma_layers, n)])


class ChromaFamily(FluxFamily):
    """Chroma: maps from chosen double / single blocks. Chroma keeps Flux.1's 19 + 38 block layout; with no
    map study of its own, the default is Flux.1's published blocks (blocks = maps chooses from Chroma's)."""

    name = "chroma"
    label = "Chroma"
    published = (PUBLISHED_BLOCKS, PUBLISHED_DEPTH)


def detect(model) -> Family | None:
    """The Chroma family for a Chroma MODEL (not Chroma Radiance, which works in pixel space), else None."""
    try:
        from comfy.ldm.chroma.model import Chroma
    except ImportError:
        return None
    dm = getattr(model.model, "diffusion_model", None)
    if type(dm) is not Chroma or not stock_blocks(dm, _block_classes()):
        return None
    return ChromaFamily(model)
