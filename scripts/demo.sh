#!/usr/bin/env bash
# The demo in one command: `bash scripts/demo.sh [--out DIR] [--checkpoint NAME] [--prompts FILE]`.
# Finds ComfyUI ($COMFYUI_PATH, else a clone of the newest tested version in ~/.cache/pos_spatial), builds or
# reuses the test command's virtual environment for that version (scripts/venv.sh), then runs
# `python -m pos_core demo` with the same options (relative paths are taken from the folder you run it in).
set -euo pipefail
here="$(pwd)"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
# ComfyUI first (finding or cloning it needs only Python's standard library), then the venv for its version
sys_python="${PYTHON:-python3.11}"
command -v "$sys_python" >/dev/null 2>&1 || sys_python=python3
COMFYUI_PATH="$("$sys_python" -m pos_core demo --comfyui-path)" || exit 2
export COMFYUI_PATH
source scripts/venv.sh
pos_venv
py="$(cd "$(dirname "$py")" && pwd)/$(basename "$py")"
pos_venv_comfyui
cd "$here"
exec "$py" -m pos_core demo "$@"
