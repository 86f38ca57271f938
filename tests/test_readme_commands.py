"""The README's "Try it in two commands" section, run as it is written.

Host-free: the test command there is the one CI runs. Host tier: the "already have ComfyUI" line, run
by bash in a scratch folder named ComfyUI (the repository placeholder replaced by this checkout), gives
a ComfyUI that loads the pack and lists its workflows in the template browser.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import comfy_host

ROOT = Path(__file__).resolve().parents[1]


def section(title: str = "Try it in two commands") -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", text, flags=re.S | re.M)
    assert m, f"README has no '## {title}' section"
    return m.group(1)


def blocks(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"```\n(.*?)```", text, flags=re.S)]


def test_section_is_near_the_top_and_its_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    assert readme.index("## Try it in two commands") < readme.index("## Install")
    cmds = blocks(section())
    assert "bash tests/run.sh" in cmds and "bash scripts/demo.sh" in cmds
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^exec bash tests/run\.sh\s*$", ci, flags=re.M), "CI no longer runs the README's command"
    assert (ROOT / "scripts" / "demo.sh").exists()


def test_install_line_as_written_gives_a_comfyui_with_the_pack(comfyui_path, tmp_path):
    line = next(b for b in blocks(section()) if "git clone" in b)
    assert "cd ComfyUI/custom_nodes" in line and "pip install -r" in line
    base = tmp_path / "ComfyUI"
    (base / "custom_nodes").mkdir(parents=True)
    cmd = line.replace("<this repository>", str(ROOT)).replace("pip install", f"{sys.executable} -m pip install -q")
    r = subprocess.run(["bash", "-c", cmd], cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (base / "custom_nodes" / "comfyui-pos-spatial" / "__init__.py").exists()
    with comfy_host.server(comfyui_path, base, link_pack=False, env={"HF_HUB_OFFLINE": "1"}) as srv:
        info = srv.get("/object_info")
        templates = srv.get("/api/workflow_templates")
    assert {"PoSGuidance", "PoSRelationsFromPrompt", "PoSScore"} <= set(info)
    assert "pos_psg_sd15" in templates.get("comfyui-pos-spatial", []), templates


def test_readme_names_no_missing_script():
    for cmd in blocks(section()):
        for path in re.findall(r"bash (\S+\.sh)", cmd):
            if not (ROOT / path).exists():
                pytest.fail(f"README runs {path}, which does not exist")
