"""Install as ComfyUI-Manager does (git clone into custom_nodes, requirements line by line with pip),
then start the real server offline: the pack loads, fast, with one log line."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import comfy_host

ROOT = Path(__file__).resolve().parents[1]


SKIP_TOP = {".git", ".venv"}


def copy_worktree(src: Path, dst: Path) -> None:
    """Copy the working tree over a clone in Python (no rsync on a fresh machine), leaving out git data,
    the venv, test artifacts and caches."""

    def ignore(folder: str, names: list[str]) -> set[str]:
        rel = Path(folder).relative_to(src)
        skip = {n for n in names if n == "__pycache__" or n.endswith(".pyc")}
        if rel == Path("."):
            skip |= SKIP_TOP & set(names)
        if rel == Path("tests"):
            skip |= {"artifacts"} & set(names)
        return skip

    shutil.copytree(src, dst, ignore=ignore, dirs_exist_ok=True, symlinks=True)


def test_copy_worktree_leaves_out_git_and_venv(tmp_path):
    """Host-free: the copy helper itself (it runs on every machine, with or without ComfyUI)."""
    src = tmp_path / "src"
    for f in ("a.py", ".git/HEAD", ".venv/bin/python", "tests/artifacts/x.png", "tests/t.py", "p/__pycache__/c.pyc"):
        (src / f).parent.mkdir(parents=True, exist_ok=True)
        (src / f).write_text(f)
    dst = tmp_path / "dst"
    (dst / "a.py").parent.mkdir(parents=True)
    (dst / "a.py").write_text("old")
    copy_worktree(src, dst)
    got = sorted(str(p.relative_to(dst)) for p in dst.rglob("*") if p.is_file())
    assert got == ["a.py", "tests/t.py"] and (dst / "a.py").read_text() == "a.py"


def test_clone_install_and_load(comfyui_path, tmp_path):
    base = tmp_path / "comfy"
    target = base / "custom_nodes" / "comfyui-pos-spatial"
    target.parent.mkdir(parents=True)
    subprocess.run(["git", "clone", "-q", str(ROOT), str(target)], check=True)
    # uncommitted work of this checkout is what is under test: copy it over the clone
    copy_worktree(ROOT, target)
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


def test_comfyui_manager_installs_from_a_git_url(comfyui_path, tmp_path):
    """ComfyUI-Manager's own cm-cli installs the pack from a git URL (served on loopback), clone and
    requirements included; the copy of ComfyUI it installed into then loads the pack."""
    import os
    import shutil
    import socket
    import threading
    from functools import partial
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    import pytest

    manager = os.environ.get("COMFYUI_MANAGER_PATH")
    if not manager:
        pytest.skip("set COMFYUI_MANAGER_PATH to a ComfyUI-Manager checkout to run it")
    srv_dir = tmp_path / "git"
    srv_dir.mkdir()
    bare = srv_dir / "comfyui-pos-spatial.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(ROOT), str(bare)], check=True)
    subprocess.run(["git", "update-server-info"], cwd=bare, check=True)
    comfy = tmp_path / "ComfyUI"
    shutil.copytree(comfyui_path, comfy, ignore=shutil.ignore_patterns(".git", "custom_nodes", "output", "input"))
    (comfy / "custom_nodes").mkdir()
    shutil.copytree(manager, comfy / "custom_nodes" / "comfyui-manager", ignore=shutil.ignore_patterns(".git"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    httpd = ThreadingHTTPServer(("127.0.0.1", port), partial(SimpleHTTPRequestHandler, directory=str(srv_dir)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        env = dict(os.environ, COMFYUI_PATH=str(comfy))
        r = subprocess.run([sys.executable, "custom_nodes/comfyui-manager/cm-cli.py", "install",
                            f"http://127.0.0.1:{port}/comfyui-pos-spatial.git"], cwd=comfy, env=env,
                           capture_output=True, text=True, timeout=600)
    finally:
        httpd.shutdown()
    assert "[INSTALLED]" in r.stdout, r.stdout[-3000:] + r.stderr[-3000:]
    assert (comfy / "custom_nodes" / "comfyui-pos-spatial" / "__init__.py").exists()
    shutil.rmtree(comfy / "custom_nodes" / "comfyui-manager")  # its startup would go online
    with comfy_host.server(comfy, comfy, link_pack=False) as srv:
        srv_nodes = srv.get("/object_info")
    assert "PoSGuidance" in srv_nodes, "the pack the Manager installed loads"
