#!/usr/bin/env bash
# The demo in one command: `bash scripts/demo.sh [--out DIR] [--checkpoint NAME] [--prompts FILE]`.
# Builds or reuses the test command's virtual environment (scripts/venv.sh), finds ComfyUI ($COMFYUI_PATH,
# else a clone at the tested version in ~/.cache/pos_spatial), then runs `python -m pos_core demo` with
# the same options (relative paths are taken from the folder you run it in).
set -euo pipefail
here="$(pwd)"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
source scripts/venv.sh
pos_venv
py="$(cd "$(dirname "$py")" && pwd)/$(basename "$py")"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
COMFYUI_PATH="$("$py" -m pos_core demo --comfyui-path)" || exit 2
export COMFYUI_PATH
pos_venv_comfyui
cd "$here"
exec "$py" -m pos_core demo "$@"
