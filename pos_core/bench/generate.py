"""One generation worker: owns one ComfyUI server (started here, or attached by URL) and turns a unit
into PNG bytes through the server's HTTP API. Plain class; `workers` makes it a Ray actor."""

from __future__ import annotations

import hashlib
import os
import socket
import tempfile
import time

from ..comfy_client import ComfyError, ComfyServer
from .workflow import SAVE_NODE, prepare


class GenerationWorker:
    """`spec`: comfyui (checkout path) or url, checkpoints, cpu, extra_args, env, scratch, index, configs
    (name -> {workflow, checkpoint, overrides})."""

    def __init__(self, spec: dict):
        self.spec = spec
        self.name = f"{socket.gethostname()}:gen{spec.get('index', 0)}"
        self.server: ComfyServer | None = None
        self.api: dict[str, dict] = {}
        self._start()

    def _start(self) -> None:
        s = self.spec
        if s.get("url"):
            self.server = ComfyServer.attach(s["url"], timeout=s.get("unit_timeout", 1800))
            return
        base = tempfile.mkdtemp(prefix=f"pos_bench_gen{s.get('index', 0)}_", dir=s.get("scratch"))
        self.server = ComfyServer.start(s["comfyui"], base, cpu=s.get("cpu"), extra_args=s.get("extra_args", ()),
                                        checkpoints=s.get("checkpoints"), env=s.get("env"),
                                        start_timeout=s.get("start_timeout", 600),
                                        timeout=s.get("unit_timeout", 1800))
        self.api = {}

    def ping(self) -> bool:
        """Answers once the worker (re)started: its server is up."""
        return True

    def info(self) -> dict:
        """Worker name, the pid of its server (None when attached) and the server's URL."""
        return {"worker": self.name, "server_pid": self.server.pid if self.server else None,
                "url": self.server.url if self.server else None, "pid": os.getpid()}

    def generate(self, unit: dict) -> dict:
        """{key, ok, png, sha256, gen_seconds, worker} or {key, ok: False, error}; never raises for a unit.
        A server that died is restarted before the next unit."""
        t0 = time.time()
        try:
            if self.server is None or (self.server.proc is not None and self.server.proc.poll() is not None):
                self._start()
            cfg = self.spec["configs"][unit["config"]]
            if unit["config"] not in self.api:
                self.api[unit["config"]] = self.server.to_api(cfg["workflow"])
            graph = prepare(self.api[unit["config"]], unit["prompt"], unit["seed"], cfg.get("checkpoint"),
                            cfg.get("overrides"), prefix=f"pos_bench/{unit['config']}")
            outputs = self.server.run(graph)
            images = self.server.images(outputs, SAVE_NODE)
            if len(images) != 1:
                raise ComfyError(f"expected 1 image from the workflow, got {len(images)} (set batch_size 1)")
            self._forget(outputs)
            png = images[0]
            return {"key": unit["key"], "ok": True, "png": png, "sha256": hashlib.sha256(png).hexdigest(),
                    "gen_seconds": time.time() - t0, "worker": self.name}
        except Exception as e:  # noqa: BLE001 - a unit's failure is data (retried, then recorded)
            if self.server is not None and self.server.proc is not None and self.server.proc.poll() is not None:
                self.server = None  # restarted on the next unit
            return {"key": unit["key"], "ok": False, "error": f"{type(e).__name__}: {e}"[:4000],
                    "gen_seconds": time.time() - t0, "worker": self.name}

    def _forget(self, outputs: dict) -> None:
        """Delete the server's own copy of the saved image (the runner keeps the fetched one)."""
        if self.server.base_dir is None:
            return
        for img in outputs.get(SAVE_NODE, {}).get("images", []):
            path = self.server.base_dir / img.get("type", "output") / img.get("subfolder", "") / img["filename"]
            try:
                path.unlink()
            except OSError:
                pass

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
