"""ComfyUI workflow formats for the tests and scripts: the one copy lives in pos_core.comfy_client
(UI format <-> API format with the real server's /object_info)."""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:  # appended: in front, the pack's nodes/ would shadow ComfyUI's nodes.py for importers
    sys.path.append(_ROOT)

from pos_core.comfy_client import WIDGET_TYPES, api_to_ui, is_widget, ui_to_api  # noqa: E402

__all__ = ["WIDGET_TYPES", "api_to_ui", "is_widget", "shipped_workflows", "ui_to_api", "LEGACY_FOLDER", "NEWER_ONLY"]

WORKFLOWS_DIR = Path(_ROOT) / "workflows"
# ComfyUI 0.3.x variants of the workflows whose stock nodes were renamed since (scripts/build_workflows.py)
LEGACY_FOLDER = "comfyui-0.3"
# workflows of model families a 0.3.x ComfyUI does not have (Flux.2, Z-Image: ComfyUI 0.33+)
NEWER_ONLY = ("pos_psg_flux2", "pos_psg_z_image")


def shipped_workflows(version: tuple[int, ...] | None = None) -> list[Path]:
    """The workflows a ComfyUI of `version` loads: workflows/*.json, with the comfyui-0.3/ variant in place of
    a workflow that has one on 0.3.x and without the families 0.3.x lacks; None = every shipped file (both
    sets), for file-level checks."""
    top = sorted(WORKFLOWS_DIR.glob("*.json"))
    legacy = sorted((WORKFLOWS_DIR / LEGACY_FOLDER).glob("*.json"))
    if version is None:
        return top + legacy
    if version >= (0, 4):
        return top
    old = {p.stem: p for p in legacy}
    return [old.get(p.stem, p) for p in top if p.stem not in NEWER_ONLY]


def comfyui_version(path: str | Path) -> tuple[int, ...]:
    """The version of the ComfyUI checkout at `path` (its comfyui_version.py), e.g. (0, 33, 0); (0,) if none."""
    import re

    f = Path(path) / "comfyui_version.py"
    m = re.search(r'__version__\s*=\s*"([\d.]+)', f.read_text()) if f.exists() else None
    return tuple(int(x) for x in m.group(1).split(".")) if m else (0,)


def host_version() -> tuple[int, ...] | None:
    """The version of the ComfyUI checkout at $COMFYUI_PATH (None where it is unset)."""
    import os

    path = os.environ.get("COMFYUI_PATH")
    return comfyui_version(path) if path else None
