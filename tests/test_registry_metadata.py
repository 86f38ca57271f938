"""Registry-ready metadata: pyproject.toml's [project] and [tool.comfy] as the Comfy Registry and
comfy-cli read them.

Host-free. `comfy node validate` (comfy-cli, installed by tests/run.sh from tests/requirements.txt) runs
on this checkout: it parses pyproject.toml as the Registry does, checks the version ranges and the OS /
accelerator classifiers (an invalid one is only a printed "Warning", so the test fails on any warning)
and runs ruff's security rules; none of this needs the network.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PLACEHOLDER = "https://github.com/pos-spatial/comfyui-pos-spatial"
# the ComfyUI versions the host tests run against (docs/comfyui-versions.md): the oldest is the Registry's
# requires-comfyui, the newest the one the demo clones (pos_core.demo.COMFYUI_VERSION)
TESTED_COMFYUI = ("0.3.64", "0.33.0")
TESTED_FRONTEND = "1.27.10"  # the front end the real-browser test ran (ComfyUI 0.3.64's requirements.txt)


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_tool_comfy_is_complete():
    comfy = pyproject()["tool"]["comfy"]
    assert comfy["PublisherId"] and comfy["DisplayName"]
    assert comfy["requires-comfyui"] == f">={TESTED_COMFYUI[0]}"
    demo = (ROOT / "pos_core" / "demo.py").read_text(encoding="utf-8")
    assert f'COMFYUI_VERSION = "v{TESTED_COMFYUI[-1]}"' in demo
    versions = (ROOT / "docs" / "comfyui-versions.md").read_text(encoding="utf-8")
    assert all(f"**{v}**" in versions for v in TESTED_COMFYUI), "docs/comfyui-versions.md lists the tested versions"
    icon = comfy["Icon"]
    assert icon.startswith(PLACEHOLDER.replace("github.com", "raw.githubusercontent.com") + "/main/"), icon
    path = ROOT / icon.split("/main/", 1)[1]
    assert path.is_file() and path.suffix in (".png", ".jpg", ".svg"), f"the icon {path} is not in the repository"
    assert path.stat().st_size < 100_000


def test_project_metadata_for_the_registry():
    project = pyproject()["project"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", project["version"])
    deps = project["dependencies"]
    assert f"comfyui-frontend-package>={TESTED_FRONTEND}" in deps, "declare the front-end range as packs do"
    reqs = [l.split("#")[0].strip() for l in (ROOT / "requirements.txt").read_text().splitlines()]
    missing = [r for r in reqs if r and r not in deps]
    assert not missing, f"requirements.txt lists {missing}, which pyproject's dependencies do not"
    cls = project["classifiers"]
    assert any(c.startswith("Operating System :: ") for c in cls)
    assert any(c.startswith("Environment :: GPU :: ") for c in cls)
    urls = project["urls"]
    for key in ("Repository", "Issues", "Documentation", "Changelog", "Paper"):
        assert urls.get(key, "").startswith("https://"), key
    assert urls["Repository"] == PLACEHOLDER
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert PLACEHOLDER in readme and "placeholder" in readme, "the README must say the repository URL is a placeholder"


def _comfy_cli() -> str | None:
    exe = Path(sys.executable).parent / "comfy"
    return str(exe) if exe.exists() else shutil.which("comfy")


def test_comfy_node_validate_passes(tmp_path):
    exe = _comfy_cli()
    if exe is None:
        pytest.skip("comfy-cli is not installed (tests/run.sh installs it from tests/requirements.txt)")
    env = dict(os.environ, HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / ".config"))
    r = subprocess.run([exe, "--skip-prompt", "--no-enable-telemetry", "node", "validate"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert "All validation checks passed" in out, out[-3000:]
    assert "Warning" not in out, out[-3000:]
