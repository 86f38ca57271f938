"""The pack's ComfyUI nodes (V3 schema): thin wrappers that validate, call pos_core and present."""

from __future__ import annotations

import logging

from comfy_api.latest import ComfyExtension, io

from . import (
    attention_maps,
    distill_lora,
    guidance,
    layout,
    relations,
    scoring,
    seed_search,
    sr4g,
    testbed_model,
    train_lora,
)

scoring.register_folder()
testbed_model.register()
NODES: list[type[io.ComfyNode]] = [*relations.NODES, *guidance.NODES, *attention_maps.NODES, *scoring.NODES,
                                   *seed_search.NODES, *sr4g.NODES, *train_lora.NODES, *layout.NODES,
                                   *distill_lora.NODES]


class PoSExtension(ComfyExtension):
    """Registers the pack's nodes with ComfyUI."""

    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return NODES


async def comfy_entrypoint() -> PoSExtension:
    logging.info("[PoS spatial] %d nodes: spatial relations, PSG guidance, PSE scoring", len(NODES))
    return PoSExtension()
