"""The bench runner on a real Ray local cluster (`ray.init(num_cpus=2)`) with two generation workers,
each owning a real ComfyUI server on the random-weight test checkpoint, and a scoring worker with tiny
random detector and SAM models. Images are 64 px, 2 steps, so a run takes a minute or two on 2 cores."""

from __future__ import annotations

import os
import shutil
import signal
import threading

import pytest

pytest.importorskip("ray")
pytest.importorskip("pyarrow")

from pos_core.bench.runner import Options, run  # noqa: E402
from pos_core.bench.store import CONTENT_COLUMNS, Store  # noqa: E402

CONFIGS = """\
defaults:
  workflow: psg_workflow.json
  checkpoint: {ckpt}
  overrides: {{steps: 2, width: 64, height: 64}}
configs:
  - name: unguided
    overrides: {{guided: false}}
  - name: psg
    overrides: {{guided: true, scale: 20, fraction: 0.5}}
scoring:
  detector: tiny-owl
  sam: tiny-sam
  threshold: 0.0
  device: cpu
"""


class DriverKilled(Exception):
    """Stands for the driver dying after some shards were committed."""


@pytest.fixture(scope="module")
def setup(comfyui_path, tiny_models, tmp_path_factory):
    import ray

    import comfy_host

    ckpt = comfy_host.fixture_checkpoint()
    base = tmp_path_factory.mktemp("bench")
    models = base / "models"
    models.mkdir()
    (models / "tiny-owl").symlink_to(tiny_models["owlv2"])
    (models / "tiny-sam").symlink_to(tiny_models["sam"])
    (base / "configs.yaml").write_text(CONFIGS.format(ckpt=ckpt.name))
    # a copy of the shipped UI-format workflow, given by path (frozen for the module's runs)
    shutil.copy(comfy_host.ROOT / "workflows" / "pos_psg_sd15.json", base / "psg_workflow.json")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield {"base": base, "ckpt_dir": str(ckpt.parent), "models": str(models), "comfyui": str(comfyui_path)}
    ray.shutdown()


def options(setup, out: str) -> Options:
    return Options(prompts="sr2d", limit=6, seeds=2, configs=str(setup["base"] / "configs.yaml"),
                   out=str(setup["base"] / out), workers=2, comfyui=setup["comfyui"], checkpoints=setup["ckpt_dir"],
                   models_dir=[setup["models"]], threads=1, shard_size=4, batch_size=4, retries=3)


def content(out) -> list[dict]:
    return [{c: r[c] for c in CONTENT_COLUMNS} for r in Store(str(out)).rows()]


@pytest.fixture(scope="module")
def uninterrupted(setup):
    result = run(options(setup, "plain"), log=lambda m: None)
    return result, setup["base"] / "plain"


def test_run_completes_with_two_workers_and_servers(uninterrupted):
    result, out = uninterrupted
    assert result["made"] == result["units"] == 6 * 2 * 2 and result["failed"] == 0
    rows = Store(str(out)).rows()
    assert len(rows) == 24 and len({r["key"] for r in rows}) == 24
    assert {r["worker"].split(":")[1] for r in rows} == {"gen0", "gen1"}, "both workers generated"
    assert all(r["status"] == "ok" and r["width"] == 64 and r["pse"] is not None for r in rows)
    import hashlib

    for r in rows:
        assert hashlib.sha256((out / r["image"]).read_bytes()).hexdigest() == r["image_sha256"]
    seeds = {}
    for r in rows:
        seeds.setdefault((r["prompt_id"], r["seed_index"]), set()).add(r["seed"])
    assert all(len(s) == 1 for s in seeds.values()), "both configs use the same seed for a prompt and index"
    table = (out / "summary.md").read_text()
    assert table.startswith("| metric | unguided | psg |") and "| units (failed) | 12 (0) | 12 (0) |" in table
    assert (out / "chart.png").exists() and (out / "summary" / "psg" / "summary.md").exists()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(")")[-1].split()[0] != "Z"


def test_killed_server_worker_and_driver_resume_to_the_same_rows(setup, uninterrupted):
    import ray

    state = {"generated": 0, "killed_server": None, "killed_worker_server": None, "failures": []}

    def on_event(kind, data, runner):
        if kind == "attempt_failed":
            state["failures"].append(data["error"])
        if kind == "generated":
            state["generated"] += 1
            n = state["generated"]
            if n == 2:  # the worker that made it is idle now: its next unit starts, then its server dies
                g = next(g for g in runner.generators if ray.get(g.info.remote())["worker"] == data["worker"])
                pid = ray.get(g.info.remote())["server_pid"]
                state["killed_server"] = pid
                threading.Timer(0.7, os.kill, (pid, signal.SIGKILL)).start()
            if n == 6:  # kill a whole worker (Ray restarts it) in the middle of its next unit
                g = next(g for g in runner.generators if ray.get(g.info.remote())["worker"] == data["worker"])
                state["killed_worker_server"] = ray.get(g.info.remote())["server_pid"]
                threading.Timer(0.7, ray.kill, (g,), {"no_restart": False}).start()
        if kind == "shard" and state["generated"] >= 10:
            raise DriverKilled()

    opts = options(setup, "killed")
    with pytest.raises(DriverKilled):
        run(opts, on_event=on_event, log=lambda m: None)
    partial = Store(opts.out).done()
    assert 0 < len(partial) < 24, "the driver died part way"
    assert any("worker died" in e for e in state["failures"]), state["failures"]
    assert any("worker died" not in e for e in state["failures"]), state["failures"]
    assert not _alive(state["killed_server"])
    assert not _alive(state["killed_worker_server"]), "the killed worker's ComfyUI server did not outlive it"

    resumed = run(options(setup, "killed"), log=lambda m: None)
    assert resumed["skipped"] == len(partial) and resumed["made"] == 24 - len(partial)
    assert content(setup["base"] / "killed") == content(uninterrupted[1])
    assert (setup["base"] / "killed" / "summary.md").read_text() == (uninterrupted[1] / "summary.md").read_text()
    final = run(options(setup, "killed"), log=lambda m: None)
    assert final["made"] == 0 and final["skipped"] == 24
