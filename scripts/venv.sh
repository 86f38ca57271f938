# Sourced by tests/run.sh and scripts/demo.sh: the virtual environment both use. Run from the
# repository root. `pos_venv` builds or reuses it (torch included) and sets $py; `pos_venv_comfyui`
# adds what the ComfyUI checkout at $COMFYUI_PATH needs (its requirements.txt less torch) plus "$@".
#
# Which torch (docs/tests.md, "Which torch"): without COMFYUI_PATH (the host-free tier, CI) the
# torch 2.14.1 / torchvision 0.29.1 that lie on this machine's disk, in .venv. With COMFYUI_PATH, a
# torch that checkout supports, torchaudio included (ComfyUI lists it; 0.33 imports it at start), in a
# venv of its own (.venv-torch<version>) so switching checkouts never reinstalls torch:
#   ComfyUI 0.3.x (0.3.64, October 2025): torch 2.9.1 / torchvision 0.24.1 / torchaudio 2.9.1
#   newer (0.33, August 2026):             torch 2.11.0 / torchvision 0.26.0 / torchaudio 2.11.0
# (the newest torchaudio on the package registry is 2.11.1, so no newer torch can satisfy 0.33).

# The ComfyUI version of the checkout at $1 ("" when it has no comfyui_version.py).
pos_comfyui_version() {
  [ -f "$1/comfyui_version.py" ] || { echo ""; return; }
  sed -n 's/^__version__ *= *"\([^"]*\)".*/\1/p' "$1/comfyui_version.py"
}

# "torch torchvision torchaudio" versions for the ComfyUI checkout at $COMFYUI_PATH ("" = none set).
pos_torch_pins() {
  if [ -z "${COMFYUI_PATH:-}" ]; then
    echo "2.14.1 0.29.1 -"
    return
  fi
  case "$(pos_comfyui_version "$COMFYUI_PATH")" in
    0.[0-3].*) echo "2.9.1 0.24.1 2.9.1" ;;
    *) echo "2.11.0 0.26.0 2.11.0" ;;
  esac
}

pos_venv() {
  read -r torch_v vision_v audio_v <<< "$(pos_torch_pins)"
  if [ -n "${POS_VENV:-}" ]; then
    venv="$POS_VENV"
  elif [ "$audio_v" = - ]; then
    venv=.venv
  else
    venv=".venv-torch$torch_v"
  fi
  python="${PYTHON:-python3.11}"
  command -v "$python" >/dev/null 2>&1 || python=python3
  [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
  py="$venv/bin/python"
  local want="torch==$torch_v torchvision==$vision_v"
  [ "$audio_v" = - ] || want="$want torchaudio==$audio_v"
  # shellcheck disable=SC2086
  "$py" -c "
import importlib.metadata as m, sys
want = dict(w.split('==') for w in sys.argv[1:])
def version(name):
    try:
        return m.version(name).split('+')[0]
    except m.PackageNotFoundError:
        return None
sys.exit(0 if all(version(n) == v for n, v in want.items()) else 1)" $want 2>/dev/null || pos_pip $want
  pos_pip -r tests/requirements.txt
  # open_clip_torch ships CLIP's real BPE vocabulary; the tests read that file only, so no deps.
  "$py" -c "import importlib.util as u; assert u.find_spec('open_clip')" 2>/dev/null || pos_pip --no-deps open_clip_torch==3.3.0
}

pos_pip() { "$py" -m pip install -q --disable-pip-version-check "$@"; }

pos_venv_comfyui() {
  grep -vE '^(torch|torchvision|torchaudio)([^a-z_-]|$)' "$COMFYUI_PATH/requirements.txt" > "$venv/comfyui-requirements.txt"
  pos_pip -r "$venv/comfyui-requirements.txt" "$@"
}
