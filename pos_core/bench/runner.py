"""The driver: units not yet in the shards go to generation actors, their images to scoring actors in
batches, rows to new Parquet shards; failed attempts are retried up to a bound, then recorded."""

from __future__ import annotations

import os
import sys
import time
from collections import deque
from dataclasses import dataclass, field

from . import config as config_mod
from . import report, sets
from .store import Store
from .units import Unit, make_units


@dataclass
class Options:
    """What `bench run` takes (see `python -m pos_core bench run --help`)."""

    prompts: str
    configs: str
    out: str
    seeds: int = 4
    address: str | None = None
    workers: int | None = None
    scorers: int = 1
    comfyui: str | None = None
    urls: list = field(default_factory=list)
    checkpoints: str | None = None
    extra_args: list = field(default_factory=list)
    threads: int | None = None
    detector: str | None = None
    sam: str | None = None
    depth: str | None = None
    models_dir: list = field(default_factory=list)
    threshold: float | None = None
    device: str | None = None
    retries: int = 2
    batch_size: int = 8
    shard_size: int = 32
    limit: int | None = None
    base_seed: int = 0
    scorer_gpus: float = 0.2
    unit_timeout: float = 1800.0
    scratch: str | None = None


def plan(opts: Options) -> tuple[list[Unit], list, dict, dict]:
    """(units, configs, scoring spec, manifest) of a run, checked before anything starts."""
    prompts = sets.load(opts.prompts, opts.limit)
    configs, scoring = config_mod.load_configs(opts.configs)
    for key in ("detector", "sam", "depth", "threshold", "device"):
        if getattr(opts, key) is not None:
            scoring[key] = getattr(opts, key)
    scoring["models_dir"] = list(scoring.get("models_dir") or []) + list(opts.models_dir)
    if not scoring.get("detector"):
        raise ValueError("scoring needs a detector: --detector NAME (Grounding DINO, OWLv2, OWL-ViT folder or hub "
                         "name) or scoring.detector in the configs file")
    units = make_units(prompts, [c.name for c in configs], opts.seeds, opts.base_seed)
    manifest = {"prompts": opts.prompts, "limit": opts.limit, "seeds": opts.seeds, "base_seed": opts.base_seed,
                "units": len(units), "configs": {c.name: c.digest() for c in configs},
                "scoring": {k: scoring.get(k) for k in ("detector", "sam", "depth", "threshold")}}
    return units, configs, scoring, manifest


def remaining(units: list[Unit], done: set[str]) -> list[Unit]:
    """The units without a committed row, in plan order: what a (re)started run makes."""
    return [u for u in units if u.key not in done]


def _row(unit: Unit, digest: str, attempts: int, gen: dict | None, score: dict | None, error: str | None) -> dict:
    row = {**unit.to_dict(), "config_digest": digest, "attempts": attempts,
           "status": "ok" if error is None else "failed", "error": error}
    if gen is not None:
        row.update(image_sha256=gen.get("sha256"), worker=gen.get("worker"), gen_seconds=gen.get("gen_seconds"))
    if score is not None:
        row.update({k: v for k, v in score.items() if k not in ("key", "ok", "error")})
    if error is not None and gen is None:
        row["image"] = None
    return row


class Runner:
    """Holds the actors and the bookkeeping of one run; `on_event(kind, data, runner)` sees progress."""

    def __init__(self, opts: Options, on_event=None, log=None):
        self.opts, self.on_event = opts, on_event
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.generators: list = []
        self.scorers: list = []

    def _event(self, kind: str, data: dict) -> None:
        if self.on_event is not None:
            self.on_event(kind, data, self)

    def _init_ray(self):
        import ray

        if not ray.is_initialized():
            if self.opts.address:
                ray.init(address=self.opts.address, log_to_driver=False)
            else:
                ray.init(include_dashboard=False, log_to_driver=False)
        return ray

    def _specs(self, configs: list, gpus: float) -> list[dict]:
        o = self.opts
        cfgs = {c.name: {"workflow": c.workflow, "checkpoint": c.checkpoint, "overrides": c.overrides} for c in configs}
        if o.urls:
            return [{"url": u, "index": i, "configs": cfgs, "unit_timeout": o.unit_timeout} for i, u in enumerate(o.urls)]
        comfyui = o.comfyui or os.environ.get("COMFYUI_PATH")
        if not comfyui:
            raise ValueError("no ComfyUI: --comfyui PATH (or COMFYUI_PATH), or existing servers with --url")
        n = o.workers or 1
        env = {}
        if not gpus:
            threads = o.threads or max(1, (os.cpu_count() or 1) // n)
            env = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        ckpts = o.checkpoints or os.path.join(comfyui, "models", "checkpoints")
        return [{"comfyui": os.path.abspath(comfyui), "checkpoints": os.path.abspath(ckpts), "cpu": not gpus,
                 "extra_args": list(o.extra_args), "env": env, "index": i, "configs": cfgs, "scratch": o.scratch,
                 "unit_timeout": o.unit_timeout} for i in range(n)]

    def run(self) -> dict:
        """Generate, score and write every unit not yet done; then the summaries. Returns counts."""
        o = self.opts
        units, configs, scoring, manifest = plan(o)
        store = Store(o.out)
        store.check_manifest(manifest)
        digests = {c.name: c.digest() for c in configs}
        done = store.done()
        todo = deque(remaining(units, done))
        skipped = len(units) - len(todo)
        self.log(f"bench: {len(units)} units ({skipped} already done, {len(todo)} to do) in {o.out}")
        t0, made, failed = time.time(), 0, 0
        if todo:
            made, failed = self._loop(todo, configs, scoring, store, digests)
        rows = store.rows()
        wanted = {u.key for u in units}
        rows = [r for r in rows if r["key"] in wanted]
        table = report.write(o.out, rows, [c.name for c in configs])
        minutes = (time.time() - t0) / 60
        self.log(table)
        return {"units": len(units), "skipped": skipped, "made": made, "failed": failed,
                "minutes": minutes, "units_per_minute": made / minutes if made and minutes else None}

    def _loop(self, todo: deque, configs: list, scoring: dict, store: Store, digests: dict) -> tuple[int, int]:
        o = self.opts
        ray = self._init_ray()
        from ray.exceptions import ActorUnavailableError, RayError

        from .workers import generation_actors, scoring_actors

        cluster_gpus = ray.cluster_resources().get("GPU", 0)
        if o.urls:
            o.workers = len(o.urls)  # servers given by URL: their GPUs are theirs, the actors take none
        elif o.workers is None:
            o.workers = int(cluster_gpus) or 1
        share = o.scorer_gpus if cluster_gpus and o.scorers <= o.workers else 0.0
        gen_gpus = 0.0 if o.urls or not cluster_gpus else 1.0 - share
        score_gpus = share
        self.generators = generation_actors(self._specs(configs, gen_gpus), gen_gpus, max_restarts=-1)
        self.scorers = scoring_actors(scoring, o.scorers, score_gpus, max_restarts=-1)
        self.log(f"bench: {len(self.generators)} generation worker(s) ({gen_gpus or 'no'} GPU each), "
                 f"{len(self.scorers)} scoring worker(s); cluster GPUs: {cluster_gpus:g}")
        attempts: dict[str, int] = {}
        idle = list(range(len(self.generators)))
        scorer_up = [True] * len(self.scorers)
        gen_refs: dict = {}      # ref -> (unit, generator index)
        score_refs: dict = {}    # ref -> (batch of (unit, gen result), scorer index)
        probes: dict = {}        # ping ref -> (kind, index): a worker that died is used again once it answers
        cooling: list = []       # (when to ping again, kind, index) for workers Ray is restarting
        alive = {"gen": set(range(len(self.generators))), "score": set(range(len(self.scorers)))}
        score_load = [0] * len(self.scorers)
        pending: list = []       # generated, waiting for a scoring batch
        rows: list[dict] = []
        last_flush, made, failed, total = time.time(), 0, 0, len(todo)
        t0 = time.time()

        def finish(row: dict) -> None:
            nonlocal made, failed
            rows.append(row)
            made += 1
            failed += row["status"] != "ok"
            self._event("row", row)

        def attempt_failed(unit: Unit, error: str, gen: dict | None = None) -> None:
            attempts[unit.key] = attempts.get(unit.key, 0) + 1
            self._event("attempt_failed", {"key": unit.key, "error": error, "attempt": attempts[unit.key]})
            if attempts[unit.key] > o.retries:
                finish(_row(unit, digests[unit.config], attempts[unit.key], gen, None, error))
            else:
                todo.append(unit)

        def probe(kind: str, i: int) -> None:
            actor = (self.generators if kind == "gen" else self.scorers)[i]
            probes[actor.ping.remote()] = (kind, i)

        try:
            while todo or gen_refs or score_refs or pending:
                now = time.time()
                for entry in [c for c in cooling if c[0] <= now]:
                    cooling.remove(entry)
                    probe(entry[1], entry[2])
                while idle and todo:
                    unit = todo.popleft()
                    g = idle.pop(0)
                    gen_refs[self.generators[g].generate.remote(unit.to_dict())] = (unit, g)
                flush_scores = not todo and not gen_refs
                up = [i for i in range(len(self.scorers)) if scorer_up[i]]
                while pending and up and (len(pending) >= o.batch_size or flush_scores):
                    s = min(up, key=lambda i: score_load[i])
                    if score_load[s] >= 2 and not flush_scores:
                        break
                    batch, pending[:] = pending[:o.batch_size], pending[o.batch_size:]
                    items = [{"key": u.key, "prompt": u.prompt, "png": gres["png"]} for u, gres in batch]
                    score_refs[self.scorers[s].score.remote(items)] = (batch, s)
                    score_load[s] += 1
                waiting = list(gen_refs) + list(score_refs) + list(probes)
                if not waiting:
                    if cooling:
                        time.sleep(max(0.0, min(c[0] for c in cooling) - time.time()))
                    continue
                timeout = max(0.1, min(c[0] for c in cooling) - time.time()) if cooling else 30
                ready, _ = ray.wait(waiting, num_returns=1, timeout=timeout)
                for ref in ready:
                    if ref in probes:
                        kind, i = probes.pop(ref)
                        try:
                            ray.get(ref)
                        except ActorUnavailableError:
                            cooling.append((time.time() + 2.0, kind, i))
                            continue
                        except RayError as e:
                            alive[kind].discard(i)
                            self.log(f"bench: {kind} worker {i} is gone: {str(e)[:2000]}")
                            if not alive[kind]:
                                raise RuntimeError(f"every {'generation' if kind == 'gen' else 'scoring'} worker "
                                                   f"died; the last error: {str(e)[:4000]}") from None
                            continue
                        if kind == "gen":
                            idle.append(i)
                        else:
                            scorer_up[i] = True
                    elif ref in gen_refs:
                        unit, g = gen_refs.pop(ref)
                        try:
                            res = ray.get(ref)
                        except RayError as e:
                            probe("gen", g)  # back to work once Ray has restarted it
                            attempt_failed(unit, f"worker died: {type(e).__name__}: {str(e)[:500]}")
                            continue
                        idle.append(g)
                        if res["ok"]:
                            path = os.path.join(o.out, unit.image)
                            os.makedirs(os.path.dirname(path), exist_ok=True)
                            tmp = f"{path}.tmp"
                            with open(tmp, "wb") as f:
                                f.write(res["png"])
                            os.replace(tmp, path)
                            pending.append((unit, res))
                            self._event("generated", {"key": unit.key, "worker": res["worker"]})
                        else:
                            attempt_failed(unit, res["error"], None)
                    else:
                        batch, s = score_refs.pop(ref)
                        score_load[s] -= 1
                        try:
                            results = {r["key"]: r for r in ray.get(ref)}
                        except RayError as e:
                            scorer_up[s] = False
                            probe("score", s)
                            results = {u.key: {"ok": False, "error": f"scoring worker died: {type(e).__name__}"}
                                       for u, _ in batch}
                        for unit, gres in batch:
                            r = results[unit.key]
                            n = attempts.get(unit.key, 0) + 1
                            if r["ok"]:
                                finish(_row(unit, digests[unit.config], n, gres, r, None))
                            elif "scoring worker died" in r["error"] and n <= o.retries:
                                attempts[unit.key] = n
                                pending.append((unit, gres))
                            else:
                                finish(_row(unit, digests[unit.config], n, gres, r, r["error"]))
                if rows and (len(rows) >= o.shard_size or time.time() - last_flush > 60):
                    self._commit(store, rows)
                    last_flush = time.time()
                    rate = made / max(1e-9, (time.time() - t0) / 60)
                    self.log(f"bench: {made}/{total} units ({failed} failed), {rate:.1f} units/min")
            self._commit(store, rows)
        finally:
            for g in self.generators:
                try:
                    ray.get(g.stop.remote(), timeout=60)
                except Exception:  # noqa: BLE001 - best effort; servers also die with their actor
                    pass
            for a in self.generators + self.scorers:
                ray.kill(a)
        return made, failed

    def _commit(self, store: Store, rows: list[dict]) -> None:
        if rows:
            name = store.write(rows)
            self._event("shard", {"name": name, "rows": len(rows)})
            rows.clear()


def run(opts: Options, on_event=None, log=None) -> dict:
    """Run (or resume) a bench; see `Runner`."""
    return Runner(opts, on_event, log).run()
