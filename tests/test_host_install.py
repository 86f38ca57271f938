"""Install as ComfyUI-Manager does (git clone into custom_nodes, requirements line by line with pip),
then start the real server offline: the pack loads, fast, with one log line."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import comfy_host

ROOT = Path(__file__).resolve().parents[1]


def test_clone_install_and_load(comfyui_path, tmp_path):
    base = tmp_path / "comfy"
    target = base / "custom_nodes" / "comfyui-pos-spatial"
    target.parent.mkdir(parents=True)
    subprocess.run(["git", "clone", "-q", str(ROOT), str(target)], check=True)
    # uncommitted work of this checkout is what is under test: copy it over the clone
    subprocess.run(["rsync", "-a", "--exclude", ".git", "--exclude", ".venv", "--exclude", "tests/artifacts",
                    f"{ROOT}/", f"{target}/"], check=True)
    for line in (target / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            assert not line.lower().startswith(("torch", "torchvision", "torchaudio")), "no torch in requirements"
            r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", line], capture_output=True, text=True)
            assert r.returncode == 0, r.stderr
    env_offline = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with comfy_host.server(comfyui_path, base, link_pack=False, env=env_offline) as srv:
        info = srv.get("/object_info")
        log = srv.log.read_text()
    assert "PoSGuidance" in info and "PoSSeedSearch" in info and "PoSScore" in info
    assert log.count("[PoS spatial]") == 1, log
    times = re.findall(r"([\d.]+) seconds(?: \(IMPORT FAILED\))?: (.*comfyui-pos-spatial)", log)
    assert times and "IMPORT FAILED" not in log.split("comfyui-pos-spatial")[0][-40:], log[-2000:]
    assert float(times[0][0]) < 1.0, f"import took {times[0][0]} s"
