#!/usr/bin/env bash
# The project's one test command (README, "Tests"). It installs everything the tests need into a
# virtual environment (torch included), then runs the host-free tier and, where COMFYUI_PATH names a
# ComfyUI checkout, the host tier (which otherwise skips, saying why). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${POS_VENV:-.venv}"
python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null 2>&1 || python=python3
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
py="$venv/bin/python"
pip() { "$py" -m pip install -q --disable-pip-version-check "$@"; }
"$py" -c "import torch, torchvision" 2>/dev/null || pip torch==2.14.1 torchvision==0.29.1
pip -r tests/requirements.txt
# open_clip_torch ships CLIP's real BPE vocabulary; the tests read that file only, so no deps.
"$py" -c "import importlib.util as u; assert u.find_spec('open_clip')" 2>/dev/null || pip --no-deps open_clip_torch==3.3.0
if [ -n "${COMFYUI_PATH:-}" ]; then
  grep -vE '^(torch|torchvision|torchaudio)([^a-z_-]|$)' "$COMFYUI_PATH/requirements.txt" > "$venv/comfyui-requirements.txt"
  pip -r "$venv/comfyui-requirements.txt" requests playwright
  # ComfyUI-Manager's own installer is exercised where COMFYUI_MANAGER_PATH names a checkout of it
  [ -z "${COMFYUI_MANAGER_PATH:-}" ] || pip -r "$COMFYUI_MANAGER_PATH/requirements.txt"
  # the real-browser test drives Debian's Chromium (no browser download); it skips without one
  command -v chromium >/dev/null 2>&1 || { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1; } || true
fi
exec "$py" -m pytest tests -ra "$@"
