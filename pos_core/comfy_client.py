"""Drive a ComfyUI server over HTTP: start `main.py` (or attach to a URL), run API-format workflows
through /prompt and /history, fetch images through /view, and convert UI-format workflows.

Shared by the bench runner and the demo. Talks HTTP only: no `comfy` import, no torch needed.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Sequence
from pathlib import Path

PACK_ROOT = Path(__file__).resolve().parents[1]
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
SEED_CONTROLS = ("fixed", "increment", "decrement", "randomize")


class ComfyError(RuntimeError):
    """ComfyUI refused or failed a workflow, or the server is not reachable / died."""


# --------------------------------------------------------------------------- workflow formats

def _inputs(info: dict) -> list[tuple[str, object, dict]]:
    out = []
    for section in ("required", "optional"):
        for name, spec in info["input"].get(section, {}).items():
            typ = spec[0]
            opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            out.append((name, typ, opts))
    return out


def is_widget(typ) -> bool:
    """Whether an /object_info input type is a widget (a value) rather than a socket."""
    return isinstance(typ, list) or typ in WIDGET_TYPES


def has_control(name: str, opts: dict) -> bool:
    """Whether the front end gives this widget a "control after generate" value beside it: when the input
    asks for one, and for every input named seed or noise_seed (as comfyui-frontend-package does)."""
    return bool(opts.get("control_after_generate")) or name in ("seed", "noise_seed")


def is_ui_format(workflow: dict) -> bool:
    """UI format (what the front end saves: nodes and links) rather than API format (id -> node)."""
    return isinstance(workflow.get("nodes"), list) and "links" in workflow


def ui_to_api(workflow: dict, object_info: dict) -> dict:
    """API-format prompt of a UI-format workflow (muted and bypassed nodes left out)."""
    links = {l[0]: l for l in workflow["links"]}
    prompt = {}
    for node in workflow["nodes"]:
        if node["type"] not in object_info:
            raise KeyError(f"node type {node['type']!r} is not installed (missing node)")
        if node.get("mode", 0) in (2, 4):
            continue
        info = object_info[node["type"]]
        by_name = {i["name"]: i for i in node.get("inputs", [])}
        values = list(node.get("widgets_values") or [])
        inputs = {}
        for name, typ, opts in _inputs(info):
            slot = by_name.get(name)
            if is_widget(typ):
                value = values.pop(0) if values else opts.get("default")
                if has_control(name, opts) and values and values[0] in SEED_CONTROLS:
                    values.pop(0)
                inputs[name] = value
            if slot is not None and slot.get("link") is not None:
                src = links[slot["link"]]
                inputs[name] = [str(src[1]), src[2]]
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt


def api_to_ui(prompt: dict, object_info: dict, titles: dict | None = None) -> dict:
    """UI-format workflow of an API prompt, laid out left to right by dependency depth."""
    depth: dict[str, int] = {}

    def d(nid: str) -> int:
        if nid not in depth:
            srcs = [v[0] for v in prompt[nid]["inputs"].values() if isinstance(v, list)]
            depth[nid] = 1 + max((d(s) for s in srcs), default=-1)
        return depth[nid]

    for nid in prompt:
        d(nid)
    nodes, links, column_y = [], [], {}
    outputs_links: dict[tuple[str, int], list[int]] = {}
    for nid, node in prompt.items():
        for name, v in node["inputs"].items():
            if isinstance(v, list):
                link_id = len(links) + 1
                typ = object_info[prompt[v[0]]["class_type"]]["output"][v[1]]
                links.append([link_id, int(v[0]), v[1], int(nid), None, typ, name])
                outputs_links.setdefault((v[0], v[1]), []).append(link_id)
    for order, nid in enumerate(sorted(prompt, key=lambda n: (depth[n], int(n)))):
        node = prompt[nid]
        info = object_info[node["class_type"]]
        ins, widgets = [], []
        for name, typ, opts in _inputs(info):
            given = node["inputs"].get(name)
            linked = isinstance(given, list)
            if is_widget(typ):
                value = opts.get("default") if given is None or linked else given
                if value is None and isinstance(typ, list):
                    value = typ[0] if typ else ""  # a linked combo may have no options yet (a folder list)
                widgets.append(value)
                if has_control(name, opts):
                    widgets.append("fixed")
                if linked:
                    ins.append({"name": name, "type": "COMBO" if isinstance(typ, list) else typ,
                                "widget": {"name": name}, "link": None})
            else:
                ins.append({"name": name, "type": typ, "link": None})
            if linked:
                for link in links:
                    if link[3] == int(nid) and link[6] == name:
                        link[4] = len(ins) - 1
                        ins[-1]["link"] = link[0]
        outs = [{"name": oname, "type": otype, "slot_index": i,
                 "links": outputs_links.get((nid, i), [])}
                for i, (oname, otype) in enumerate(zip(info["output_name"], info["output"]))]
        x = 40 + depth[nid] * 380
        y = column_y.get(depth[nid], 40)
        height = 50 + 26 * (len(ins) + len(widgets)) + (260 if info.get("output_node") else 0)
        column_y[depth[nid]] = y + height + 40
        entry = {"id": int(nid), "type": node["class_type"], "pos": [x, y], "size": [340, height], "flags": {},
                 "order": order, "mode": 0, "inputs": ins, "outputs": outs,
                 "properties": {"Node name for S&R": node["class_type"]}, "widgets_values": widgets}
        if titles and nid in titles:
            entry["title"] = titles[nid]
        nodes.append(entry)
    return {"last_node_id": max(int(n) for n in prompt), "last_link_id": len(links), "nodes": nodes,
            "links": [l[:6] for l in links], "groups": [], "config": {}, "extra": {}, "version": 0.4}


# --------------------------------------------------------------------------- server

def free_port() -> int:
    """A TCP port free on loopback now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """Child side of Popen: get SIGTERM when the starting process dies (Linux), so no server outlives it."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _gpu_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        return False


def _link(dst: Path, src: Path) -> None:
    if dst.is_symlink() and dst.resolve() != src.resolve():
        dst.unlink()
    if not dst.exists():
        dst.symlink_to(src, target_is_directory=src.is_dir())


class ComfyServer:
    """One ComfyUI server: started here (`start`) and stopped by `stop`, or attached to (`attach`)."""

    def __init__(self, url: str, proc: subprocess.Popen | None = None, base_dir: Path | None = None,
                 log: Path | None = None, timeout: float = 600.0):
        self.url = url.rstrip("/")
        self.proc, self.base_dir, self.log, self.timeout = proc, base_dir, log, timeout
        self.client_id = uuid.uuid4().hex
        self._object_info: dict | None = None

    # ---- lifecycle

    @classmethod
    def start(cls, comfyui_path: str | os.PathLike, base_dir: str | os.PathLike, port: int | None = None,
              cpu: bool | None = None, extra_args: Sequence[str] = (), checkpoints: str | os.PathLike | None = None,
              custom_nodes: Sequence[str | os.PathLike] | None = None, models: dict | None = None,
              python: str = sys.executable, env: dict | None = None, start_timeout: float = 300.0,
              timeout: float = 600.0) -> ComfyServer:
        """Start `main.py` on loopback with a scratch base directory holding this pack (or `custom_nodes`)
        and a checkpoint folder (`checkpoints`, via an extra model paths file); wait until it answers.
        `cpu=None` adds `--cpu` when torch sees no GPU; `models` maps a models subfolder to a folder."""
        comfy = Path(comfyui_path)
        if not (comfy / "main.py").is_file():
            raise ValueError(f"ComfyUI path {str(comfy)!r} has no main.py: give a ComfyUI checkout")
        base = Path(base_dir).resolve()
        for d in ("custom_nodes", "input", "output", "temp", "user", "models"):
            (base / d).mkdir(parents=True, exist_ok=True)
        for src in (custom_nodes if custom_nodes is not None else [PACK_ROOT]):
            src = Path(src).resolve()
            _link(base / "custom_nodes" / ("pos-spatial" if src == PACK_ROOT else src.name), src)
        folders = dict(models or {})
        if checkpoints is not None:
            folders.setdefault("checkpoints", str(Path(checkpoints).resolve()))
        args = [python, "main.py", "--listen", "127.0.0.1", "--port", str(port or free_port()),
                "--base-directory", str(base), "--disable-auto-launch", "--dont-print-server"]
        if folders:
            cfg = base / "extra_model_paths.yaml"
            lines = ["pos_bench:", "  base_path: /"] + [f"  {k}: {json.dumps(str(Path(v).resolve()))}"
                                                        for k, v in folders.items()]
            cfg.write_text("\n".join(lines) + "\n")
            args += ["--extra-model-paths-config", str(cfg)]
        if cpu or (cpu is None and not _gpu_available()):
            args.append("--cpu")
        args += list(extra_args)
        log = base / "comfyui.log"
        with open(log, "ab") as f:
            proc = subprocess.Popen(args, cwd=comfy, stdout=f, stderr=subprocess.STDOUT,
                                    env=dict(os.environ, PYTHONUNBUFFERED="1", **(env or {})),
                                    preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
        srv = cls(f"http://127.0.0.1:{args[args.index('--port') + 1]}", proc, base, log, timeout)
        try:
            srv.wait_ready(start_timeout)
        except BaseException:
            srv.stop()
            raise
        return srv

    @classmethod
    def attach(cls, url: str, timeout: float = 600.0, ready_timeout: float = 60.0) -> ComfyServer:
        """A running server at `url` (not stopped by `stop`)."""
        srv = cls(url, timeout=timeout)
        srv.wait_ready(ready_timeout)
        return srv

    def wait_ready(self, timeout: float) -> None:
        """Block until /system_stats answers; on failure raise with the tail of the server's log."""
        end = time.time() + timeout
        while True:
            try:
                self._request("/system_stats", timeout=10)
                return
            except ComfyError:
                if self.proc is not None and self.proc.poll() is not None:
                    raise ComfyError(f"ComfyUI exited with status {self.proc.returncode} while starting; "
                                     f"log tail:\n{self.log_tail()}") from None
                if time.time() > end:
                    raise ComfyError(f"ComfyUI at {self.url} did not answer within {timeout:.0f} s; "
                                     f"log tail:\n{self.log_tail()}") from None
                time.sleep(0.5)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        """Whether the server answers (and, when started here, its process runs)."""
        if self.proc is not None and self.proc.poll() is not None:
            return False
        try:
            self._request("/system_stats", timeout=10)
            return True
        except ComfyError:
            return False

    def log_tail(self, chars: int = 3000) -> str:
        if self.log is None or not self.log.exists():
            return "(no log: attached server)"
        with open(self.log, "rb") as f:
            f.seek(max(0, f.seek(0, 2) - chars))
            return f.read().decode("utf-8", "replace")

    def stop(self) -> None:
        """Stop a server started here (SIGTERM, then SIGKILL after 20 s); attached servers are left running."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=20)

    def __enter__(self) -> ComfyServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- HTTP

    def _request(self, path: str, payload: dict | None = None, timeout: float = 60.0) -> bytes:
        data = None if payload is None else json.dumps(payload).encode()
        req = urllib.request.Request(self.url + path, data=data,
                                     headers={"Content-Type": "application/json"} if data else {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.read()
        except urllib.error.HTTPError as e:
            body = e.read().decode("utf-8", "replace")
            raise ComfyError(f"{path}: HTTP {e.code}: {body[:4000]}") from None
        except (urllib.error.URLError, ConnectionError, OSError) as e:
            raise ComfyError(f"{self.url}{path}: {getattr(e, 'reason', e)}") from None

    def get(self, path: str) -> dict:
        return json.loads(self._request(path))

    def post(self, path: str, payload: dict | None = None) -> dict:
        body = self._request(path, payload or {})
        return json.loads(body) if body else {}

    def object_info(self) -> dict:
        """The server's /object_info (node inputs and widget order), fetched once."""
        if self._object_info is None:
            self._object_info = self.get("/object_info")
        return self._object_info

    def to_api(self, workflow: dict) -> dict:
        """API format of a workflow in either format (UI format converted with this server's node info)."""
        if not is_ui_format(workflow):
            return workflow
        try:
            return ui_to_api(workflow, self.object_info())
        except KeyError as e:
            raise ComfyError(f"workflow cannot run on {self.url}: {e.args[0]}") from None

    # ---- running

    def queue(self, api_workflow: dict, extra_data: dict | None = None) -> str:
        """Queue an API-format workflow; its prompt id. ComfyUI's validation errors raise ComfyError.
        `extra_data` goes with it (e.g. {"extra_pnginfo": {"workflow": ui}}: SaveImage embeds that workflow)."""
        payload = {"prompt": api_workflow, "client_id": self.client_id}
        if extra_data:
            payload["extra_data"] = extra_data
        try:
            r = self.post("/prompt", payload)
        except ComfyError as e:
            raise ComfyError(f"ComfyUI refused the workflow: {e}") from None
        if "prompt_id" not in r:
            raise ComfyError(f"ComfyUI refused the workflow: {json.dumps(r)[:4000]}")
        return r["prompt_id"]

    def wait(self, prompt_id: str, timeout: float | None = None) -> dict:
        """The /history entry of a prompt once it finished, successfully or not."""
        end = time.time() + (self.timeout if timeout is None else timeout)
        delay = 0.05
        while time.time() < end:
            h = self.get(f"/history/{prompt_id}")
            entry = h.get(prompt_id)
            if entry and entry.get("status", {}).get("completed") is not None:
                return entry
            if self.proc is not None and self.proc.poll() is not None:
                raise ComfyError(f"ComfyUI exited with status {self.proc.returncode} while running; "
                                 f"log tail:\n{self.log_tail()}")
            time.sleep(delay)
            delay = min(0.5, delay * 1.5)
        raise ComfyError(f"prompt {prompt_id} did not finish within {timeout or self.timeout:.0f} s")

    def run(self, api_workflow: dict, timeout: float | None = None, extra_data: dict | None = None) -> dict:
        """Run a workflow and return its outputs (node id -> output dict); ComfyError with ComfyUI's
        own message when it fails."""
        entry = self.wait(self.queue(api_workflow, extra_data), timeout)
        status = entry["status"]
        if status.get("status_str") != "success":
            errors = [m[1] for m in status.get("messages", []) if m[0] == "execution_error"]
            detail = (f"{errors[0].get('node_type')} (node {errors[0].get('node_id')}): "
                      f"{errors[0].get('exception_message', '').strip()}") if errors else json.dumps(status)[:2000]
            raise ComfyError(f"workflow failed: {detail}")
        return entry.get("outputs", {})

    def images(self, outputs: dict, node_id: str | None = None) -> list[bytes]:
        """Bytes (PNG) of the images the output nodes (or one node) saved, fetched through /view."""
        out = []
        for nid, node_out in outputs.items():
            if node_id is not None and nid != str(node_id):
                continue
            for img in node_out.get("images", []):
                q = urllib.parse.urlencode({"filename": img["filename"], "subfolder": img.get("subfolder", ""),
                                            "type": img.get("type", "output")})
                out.append(self._request(f"/view?{q}"))
        return out
