"""ComfyUI workflow formats for the tests and scripts: the one copy lives in pos_core.comfy_client
(UI format <-> API format with the real server's /object_info)."""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from pos_core.comfy_client import WIDGET_TYPES, api_to_ui, is_widget, ui_to_api  # noqa: E402

__all__ = ["WIDGET_TYPES", "api_to_ui", "is_widget", "ui_to_api"]
