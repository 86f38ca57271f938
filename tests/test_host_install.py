"""Install as ComfyUI-Manager does (git clone into custom_nodes, requirements line by line with pip),
then start the real server offline: the pack loads, fast, with one log line. Installs go into a
throwaway venv on top of the test venv (throwaway_venv), never into the venv later tests run in."""

from __future__ import annotations

import contextlib
import json
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


def throwaway_venv(path: Path) -> str:
    """A venv at `path` that sees every package of the test venv (a .pth file runs site.addsitedir on the
    test venv's site-packages, their .pth files included) while pip and uv install into its own
    site-packages, which come first on sys.path. What an installer puts there (ComfyUI-Manager's numpy<2)
    shadows the test venv's copy in this venv's processes only. Returns its python."""
    import site
    import venv

    venv.EnvBuilder(with_pip=False, symlinks=True).create(path)
    py = str(path / "bin" / "python")
    own = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], capture_output=True,
                         text=True, check=True).stdout.strip()
    Path(own, "_test_venv.pth").write_text("".join(f"import site; site.addsitedir({d!r})\n"
                                                   for d in site.getsitepackages()))
    return py


def installed(python: str = sys.executable) -> dict[str, str]:
    """Distribution name -> version as `python` sees them (a fresh process: no import caches)."""
    code = ("import json, importlib.metadata as m; "
            "print(json.dumps({d.metadata['Name'].lower(): d.version for d in m.distributions()}))")
    return json.loads(subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout)


def test_throwaway_venv_installs_beside_the_test_venv(tmp_path):
    """Host-free: a package pip installs into the throwaway venv (a wheel made here, no network) is seen
    there and not in the test venv, while the test venv's packages stay visible there."""
    import zipfile

    py = throwaway_venv(tmp_path / "venv")
    wheel = tmp_path / "pos_probe_pkg-1.0-py3-none-any.whl"
    info = "pos_probe_pkg-1.0.dist-info"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("pos_probe_pkg/__init__.py", "")
        z.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: pos-probe-pkg\nVersion: 1.0\n")
        z.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{info}/RECORD", "")
    before = installed()
    r = subprocess.run([py, "-m", "pip", "install", "-q", "--no-index", "--no-deps", str(wheel)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert installed(py)["pos-probe-pkg"] == "1.0" and installed(py)["pytest"] == before["pytest"]
    assert "pos-probe-pkg" not in installed() and installed() == before


def test_clone_install_and_load(comfyui_path, tmp_path):
    base = tmp_path / "comfy"
    target = base / "custom_nodes" / "comfyui-pos-spatial"
    target.parent.mkdir(parents=True)
    subprocess.run(["git", "clone", "-q", str(ROOT), str(target)], check=True)
    # uncommitted work of this checkout is what is under test: copy it over the clone
    copy_worktree(ROOT, target)
    before = installed()
    py = throwaway_venv(tmp_path / "venv")
    for line in (target / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            assert not line.lower().startswith(("torch", "torchvision", "torchaudio")), "no torch in requirements"
            r = subprocess.run([py, "-m", "pip", "install", "-q", line], capture_output=True, text=True)
            assert r.returncode == 0, r.stderr
    assert installed() == before, "the install changed the test venv"
    env_offline = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with comfy_host.server(comfyui_path, base, python=py, link_pack=False, env=env_offline) as srv:
        info = srv.get("/object_info")
        log = srv.log.read_text()
    assert "PoSGuidance" in info and "PoSSeedSearch" in info and "PoSScore" in info
    assert log.count("[PoS spatial]") == 1, log
    times = re.findall(r"([\d.]+) seconds(?: \(IMPORT FAILED\))?: (.*comfyui-pos-spatial)", log)
    assert times and "IMPORT FAILED" not in log.split("comfyui-pos-spatial")[0][-40:], log[-2000:]
    assert float(times[0][0]) < 1.0, f"import took {times[0][0]} s"


@contextlib.contextmanager
def served_pack(tmp_path: Path):
    """This repository's committed HEAD as a bare git repository served over http on loopback (what a user's
    Manager clones from a git URL); yields its URL."""
    import socket
    import threading
    from functools import partial
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    srv_dir = tmp_path / "git"
    srv_dir.mkdir()
    bare = srv_dir / "comfyui-pos-spatial.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(ROOT), str(bare)], check=True)
    subprocess.run(["git", "update-server-info"], cwd=bare, check=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    httpd = ThreadingHTTPServer(("127.0.0.1", port), partial(SimpleHTTPRequestHandler, directory=str(srv_dir)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{port}/comfyui-pos-spatial.git"
    finally:
        httpd.shutdown()


def comfy_copy(comfyui_path: Path, tmp_path: Path) -> Path:
    """A copy of the ComfyUI checkout with an empty custom_nodes/, as a user's install has."""
    comfy = tmp_path / "ComfyUI"
    top = {".git", "custom_nodes", "output", "input", "user", "models"}  # at the top only: comfy_api/input is code

    def ignore(folder: str, names: list[str]) -> set[str]:
        return top & set(names) if Path(folder) == Path(comfyui_path) else {n for n in names if n == "__pycache__"}

    shutil.copytree(comfyui_path, comfy, ignore=ignore)
    (comfy / "custom_nodes").mkdir()
    return comfy


def test_comfyui_manager_package_installs_from_a_git_url(comfyui_path, tmp_path):
    """ComfyUI 0.33+: the comfyui_manager package the checkout pins (manager_requirements.txt, installed by
    tests/run.sh from the package registry) installs the pack with its cm-cli from a git URL served on
    loopback; ComfyUI started with --enable-manager loads it, and the Manager lists it as installed."""
    import os

    import pytest

    pin = comfyui_path / "manager_requirements.txt"
    if not pin.exists():
        pytest.skip(f"ComfyUI {'.'.join(map(str, comfy_host.comfyui_version(comfyui_path)))} has no Manager "
                    "package (manager_requirements.txt): its Manager is a git checkout (COMFYUI_MANAGER_PATH)")
    want = pin.read_text().split("==")[1].strip() if "==" in pin.read_text() else None
    got = installed().get("comfyui_manager") or installed().get("comfyui-manager")
    assert got and (want is None or got == want), f"comfyui_manager {got} in the test venv; the checkout pins {want}"
    comfy = comfy_copy(comfyui_path, tmp_path)
    before = installed()
    py = throwaway_venv(tmp_path / "venv")  # the Manager pip-installs the pack's requirements: into this venv
    with served_pack(tmp_path) as url:
        env = dict(os.environ, COMFYUI_PATH=str(comfy), VIRTUAL_ENV=str(tmp_path / "venv"))
        env.pop("CONDA_PREFIX", None)
        # cm-cli as `python -m cm_cli` of the throwaway venv: the console script would run the test venv's python
        r = subprocess.run([py, "-m", "cm_cli", "install", url], cwd=comfy, env=env, capture_output=True, text=True,
                           timeout=600)
    assert r.returncode == 0 and "[INSTALLED]" in r.stdout, r.stdout[-3000:] + r.stderr[-3000:]
    assert (comfy / "custom_nodes" / "comfyui-pos-spatial" / "__init__.py").exists()
    assert installed() == before, "the Manager's install changed the test venv"
    offline = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with comfy_host.server(comfy, comfy, python=py, link_pack=False, env=offline, args=("--enable-manager",)) as srv:
        nodes = srv.get("/object_info")
        listed = srv.get("/v2/customnode/installed")
        log = srv.log.read_text()
    assert "PoSGuidance" in nodes, "the pack the Manager installed loads"
    assert "ComfyUI-Manager" in log or "comfyui_manager" in log.lower(), "the Manager started (--enable-manager)"
    names = json.dumps(listed).lower()
    assert "comfyui-pos-spatial" in names, f"the Manager lists the pack as installed: {names[:2000]}"


def test_comfyui_manager_installs_from_a_git_url(comfyui_path, tmp_path):
    """ComfyUI 0.3.x: ComfyUI-Manager's own cm-cli (a git checkout, COMFYUI_MANAGER_PATH) installs the pack
    from a git URL (served on loopback), clone and requirements included; that ComfyUI then loads the pack."""
    import os

    import pytest

    manager = os.environ.get("COMFYUI_MANAGER_PATH")
    if not manager:
        pytest.skip("set COMFYUI_MANAGER_PATH to a ComfyUI-Manager checkout to run it (ComfyUI 0.33+ is tested "
                    "with its Manager package instead)")
    comfy = comfy_copy(comfyui_path, tmp_path)
    shutil.copytree(manager, comfy / "custom_nodes" / "comfyui-manager", ignore=shutil.ignore_patterns(".git"))
    before = installed()
    py = throwaway_venv(tmp_path / "venv")  # the Manager pins numpy<2: into this venv, not the test venv
    with served_pack(tmp_path) as url:
        env = dict(os.environ, COMFYUI_PATH=str(comfy), VIRTUAL_ENV=str(tmp_path / "venv"))
        env.pop("CONDA_PREFIX", None)
        r = subprocess.run([py, "custom_nodes/comfyui-manager/cm-cli.py", "install", url], cwd=comfy, env=env,
                           capture_output=True, text=True, timeout=600)
    assert "[INSTALLED]" in r.stdout, r.stdout[-3000:] + r.stderr[-3000:]
    assert (comfy / "custom_nodes" / "comfyui-pos-spatial" / "__init__.py").exists()
    assert installed() == before, "the Manager's install changed the test venv"
    # the bench's pyarrow (requirements-bench.txt, in the test venv) imports beside the Manager's numpy
    r = subprocess.run([py, "-c", "import numpy, pyarrow; print(numpy.__version__, pyarrow.__version__)"],
                       capture_output=True, text=True)
    assert r.returncode == 0, f"numpy {installed(py).get('numpy')}: {r.stderr[-2000:]}"
    shutil.rmtree(comfy / "custom_nodes" / "comfyui-manager")  # its startup would go online
    with comfy_host.server(comfy, comfy, python=py, link_pack=False) as srv:
        srv_nodes = srv.get("/object_info")
    assert "PoSGuidance" in srv_nodes, "the pack the Manager installed loads"
