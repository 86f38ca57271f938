# Sourced by tests/run.sh and scripts/demo.sh: the one virtual environment both use. Run from the
# repository root. `pos_venv` builds or reuses it (torch included) and sets $py; `pos_venv_comfyui`
# adds what the ComfyUI checkout at $COMFYUI_PATH needs (its requirements.txt less torch) plus "$@".
pos_venv() {
  venv="${POS_VENV:-.venv}"
  python="${PYTHON:-python3.11}"
  command -v "$python" >/dev/null 2>&1 || python=python3
  [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
  py="$venv/bin/python"
  "$py" -c "import torch, torchvision" 2>/dev/null || pos_pip torch==2.14.1 torchvision==0.29.1
  pos_pip -r tests/requirements.txt
  # open_clip_torch ships CLIP's real BPE vocabulary; the tests read that file only, so no deps.
  "$py" -c "import importlib.util as u; assert u.find_spec('open_clip')" 2>/dev/null || pos_pip --no-deps open_clip_torch==3.3.0
}

pos_pip() { "$py" -m pip install -q --disable-pip-version-check "$@"; }

pos_venv_comfyui() {
  grep -vE '^(torch|torchvision|torchaudio)([^a-z_-]|$)' "$COMFYUI_PATH/requirements.txt" > "$venv/comfyui-requirements.txt"
  pos_pip -r "$venv/comfyui-requirements.txt" "$@"
}
