#!/usr/bin/env bash
# The project's one test command (README, "Tests"). It installs everything the tests need into a
# virtual environment (torch included), then runs the host-free tier and, where COMFYUI_PATH names a
# ComfyUI checkout, the host tier (which otherwise skips, saying why). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
# the virtual environment (shared with scripts/demo.sh)
source scripts/venv.sh
pos_venv
if [ -n "${COMFYUI_PATH:-}" ]; then
  pos_venv_comfyui requests playwright
  # ComfyUI-Manager as users get it: the package the checkout pins (ComfyUI 0.33 and newer, with its
  # cm-cli); an older checkout's Manager is exercised where COMFYUI_MANAGER_PATH names a git checkout
  [ ! -f "$COMFYUI_PATH/manager_requirements.txt" ] || pos_pip -r "$COMFYUI_PATH/manager_requirements.txt"
  [ -z "${COMFYUI_MANAGER_PATH:-}" ] || pos_pip -r "$COMFYUI_MANAGER_PATH/requirements.txt"
  # the real-browser test drives Debian's Chromium (no browser download); it skips without one
  command -v chromium >/dev/null 2>&1 || { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1; } || true
fi
exec "$py" -m pytest tests -ra "$@"
