"""ComfyUI entry point of the PoS spatial node pack: registers the nodes and serves web/ (the nodes'
help pages, web/docs/<node id>.md, shown by the front end's node docs panel), nothing else."""

from .nodes import comfy_entrypoint

WEB_DIRECTORY = "./web"

__all__ = ["comfy_entrypoint", "WEB_DIRECTORY"]
