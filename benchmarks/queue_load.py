"""Under load: many guided prompts queued at once on one real ComfyUI server, some cancelled mid-run.

    COMFYUI_PATH=/path/to/ComfyUI python benchmarks/queue_load.py [--n 200] [--cancel 20] [--size 64]
        [--steps 3] [--checkpoint FILE | --testbed] [--threads 1]

Starts one server (tests/comfy_host.server: `main.py --cpu` with this pack), builds --n varied API graphs
(prompts with left / right / above / below relations, seeds, scales, guided fractions, samplers, batch
sizes; some beside a stock model patch before PoS Guidance: FreeU_V2, RescaleCFG,
PerturbedAttentionGuidance, LoraLoaderModelOnly; some with PoS Seed Search instead of KSampler; some
with PoS Attention Maps whose JSON report goes to Preview Any), each ending in SaveLatent. The first
graph is queued again as the last one; some graphs are "siblings" of the one before (the same graph
up to PoS Guidance, another sampler seed), so ComfyUI serves PoS Guidance's output (patched model and
run state) from its cache to the next prompt. After a warm-up (the first 10 graphs with other seeds),
all are queued at once; then --cancel of them are cancelled: half by POST /queue {"delete": [...]}
while still pending, half by POST /interrupt {"prompt_id": ...} while each is running (on /queue's
queue_running), once its sampler has reported a step on the websocket (mid-sampling); the prompt
after each interrupted one is its sibling. The server's RSS (VmRSS of its process) is read once 20
runs have completed and when the queue is empty.

Checks (exit status 1 if one fails):
  - every prompt that was not cancelled succeeded, and no deleted prompt ran;
  - every finished prompt's latent equals the latent of the same graph run alone (POST /free with
    free_memory first, so ComfyUI's execution cache is reset; the run must report no cached node):
    max |a - b| <= 2e-5 * max |b|; where the graph has PoS Attention Maps, its report (attention PoS
    per relation, step range, guidance loss per step) equals the alone run's too;
  - the graph queued first and last gives the same latent (no run state carried across prompts);
  - no finished prompt had its sampler node served from the cache (each latent was really computed);
  - RSS grows by under 5 % from after the first 20 completed runs to the end.

Prints a figures table. `run(...)` is the same thing as a function (tests/test_host_load.py).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOL = 2e-5  # max |a - b| over max |b|: CPU float32 is deterministic, so this is ~0 when all is well
RSS_GROWTH = 5.0  # per cent, after the first RSS_AFTER completed runs to the end
RSS_AFTER = 20
TRACE_EVERY = 20  # completed runs between RSS readings of the trace
WARMUP = 10  # warm-up runs before the load (the first graphs with other seeds)
SAMPLERS = (("euler", "normal"), ("euler_ancestral", "normal"), ("dpmpp_2m", "karras"), ("heun", "normal"))
PATCHES = (None, None, "FreeU_V2", "RescaleCFG", "PerturbedAttentionGuidance", "LoraLoaderModelOnly")


def setup() -> Path:
    """Put ComfyUI (COMFYUI_PATH), the tests' host helpers and this folder on sys.path."""
    comfy = os.environ.get("COMFYUI_PATH")
    if not comfy or not Path(comfy, "comfy").is_dir():
        sys.exit("queue_load.py: set COMFYUI_PATH to a ComfyUI checkout")
    for p in (str(ROOT / "benchmarks"), str(ROOT / "tests")):
        if p not in sys.path:
            sys.path.insert(0, p)
    for p in (comfy, str(ROOT)):  # ComfyUI's `nodes` module before this pack's nodes/ folder
        if p not in sys.path:
            sys.path.append(p)
    return Path(comfy)


def testbed_checkpoint() -> Path | None:
    """The trained testbed checkpoint of effect.py's default config, if its training cache has it."""
    import testbed

    path = testbed.checkpoint_path(testbed.Config())
    return path if path.exists() else None


# ------------------------------------------------------------------------------------------- graphs

def make_graph(i: int, rng: random.Random, prompt: str, ckpt: str, size: int, steps: int,
               lora: str | None) -> dict:
    """One varied API-format graph ending in SaveLatent (node "9", prefix set by the caller)."""
    g = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "2": {"class_type": "PoSRelationsFromPrompt", "inputs": {"clip": ["1", 1], "text": prompt}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": rng.choice(["", "blurry"])}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": size, "height": size,
                                                           "batch_size": 2 if i % 7 == 3 else 1}},
        "9": {"class_type": "SaveLatent", "inputs": {"samples": ["6", 0], "filename_prefix": "qload/x"}},
    }
    model = ["1", 0]
    patch = PATCHES[i % len(PATCHES)]
    if patch == "LoraLoaderModelOnly" and not lora:
        patch = None
    if patch == "FreeU_V2":
        g["20"] = {"class_type": "FreeU_V2", "inputs": {"model": model, "b1": 1.3, "b2": 1.4, "s1": 0.9, "s2": 0.2}}
    elif patch == "RescaleCFG":
        g["20"] = {"class_type": "RescaleCFG", "inputs": {"model": model, "multiplier": rng.choice([0.5, 0.7])}}
    elif patch == "PerturbedAttentionGuidance":
        g["20"] = {"class_type": "PerturbedAttentionGuidance", "inputs": {"model": model, "scale": 3.0}}
    elif patch == "LoraLoaderModelOnly":
        g["20"] = {"class_type": "LoraLoaderModelOnly", "inputs": {"model": model, "lora_name": lora,
                                                                   "strength_model": rng.choice([0.5, 1.0])}}
    if patch:
        model = ["20", 0]
    g["4"] = {"class_type": "PoSGuidance", "inputs": {
        "model": model, "relations": ["2", 1], "scale": rng.choice([5.0, 10.0, 20.0, 40.0]),
        "guided_fraction": rng.choice([0.34, 0.5, 1.0]), "loss_scale": -1.0,
        "smoothing": rng.random() < 0.7, "attention_level": "auto"}}
    seed, cfg = rng.randrange(2 ** 32), rng.choice([3.0, 5.0, 7.0])
    if i % 5 == 2:  # PoS Seed Search instead of KSampler, on the guided model or the plain one
        g["6"] = {"class_type": "PoSSeedSearch", "inputs": {
            "model": ["4", 0] if i % 10 == 2 else model, "positive": ["2", 0], "negative": ["3", 0],
            "latent_image": ["5", 0], "relations": ["2", 1], "seed": seed, "candidates": rng.choice([2, 3]),
            "mode": "attention", "steps": steps, "search_steps": 1, "cfg": cfg, "sampler_name": "euler",
            "scheduler": "normal", "batch_size": 0, "vae": ["1", 2]}}
        if g["6"]["inputs"]["model"] != ["4", 0]:
            del g["4"]
        return g
    sampler, scheduler = SAMPLERS[rng.randrange(len(SAMPLERS))]
    g["6"] = {"class_type": "KSampler", "inputs": {
        "model": ["4", 0], "seed": seed, "steps": steps, "cfg": cfg, "sampler_name": sampler,
        "scheduler": scheduler, "positive": ["2", 0], "negative": ["3", 0], "latent_image": ["5", 0],
        "denoise": 1.0}}
    if i % 4 == 1:  # the run state's maps, relations and step counters, read back as a report
        g["7"] = {"class_type": "VAEDecode", "inputs": {"samples": ["6", 0], "vae": ["1", 2]}}
        g["8"] = {"class_type": "PoSAttentionMaps", "inputs": {"attention": ["4", 1], "images": ["7", 0],
                                                               "start_step": 0, "end_step": -1}}
        g["10"] = {"class_type": "PreviewAny", "inputs": {"source": ["8", 1]}}
    return g


def is_search(i: int) -> bool:
    return i % 5 == 2


def make_graphs(n: int, ckpt: str, size: int, steps: int, lora: str | None, seed: int = 0,
                siblings: set[int] = frozenset()) -> list[dict]:
    """n graphs (n >= 3); the last is the first again (same graph queued first and last). A sibling
    (index in `siblings`, its predecessor a KSampler graph) is its predecessor with another sampler seed:
    everything up to PoS Guidance is identical, so ComfyUI serves PoS Guidance's outputs (the patched
    model and its run state) from the cache, and that run state meets a second sampling."""
    from pos_core.scenes import eval_cases

    rng = random.Random(seed)
    cases = eval_cases(n - 1, seed=1234 + seed, held_out=False)
    graphs = []
    for i in range(n - 1):
        g = make_graph(i, rng, cases[i][0], ckpt, size, steps, lora)
        if i in siblings and i > 0 and graphs[i - 1]["6"]["class_type"] == "KSampler":
            g = copy.deepcopy(graphs[i - 1])
            g["6"]["inputs"]["seed"] = rng.randrange(2 ** 32)
        graphs.append(g)
    graphs.append(copy.deepcopy(graphs[0]))
    return graphs


def with_prefix(graph: dict, prefix: str) -> dict:
    g = copy.deepcopy(graph)
    g["9"]["inputs"]["filename_prefix"] = prefix
    return g


# ---------------------------------------------------------------------------------------- measuring

def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def messages(entry: dict) -> dict:
    return {name: data for name, data in entry["status"].get("messages", [])}


def latent_of(srv, entry: dict):
    from safetensors.torch import load_file

    f = entry["outputs"]["9"]["latents"][0]
    return load_file(str(srv.base / f["type"] / f.get("subfolder", "") / f["filename"]))["latent_tensor"]


def report_of(entry: dict):
    return json.loads(entry["outputs"]["10"]["text"][0]) if "10" in entry.get("outputs", {}) else None


def close(a, b, tol: float) -> bool:
    """Nested JSON values equal, numbers within tol (relative to max(1, |b|))."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k], tol) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y, tol) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and abs(a - b) <= tol * max(1.0, abs(b))
    return a == b


def rel_diff(a, b) -> float:
    if a.shape != b.shape:
        return float("inf")
    return float((a.float() - b.float()).abs().max() / b.float().abs().max().clamp_min(1e-12))


def run_alone(srv, graph: dict, log) -> dict:
    """The graph by itself after POST /free (execution cache reset): its history entry, no node cached."""
    for attempt in range(3):
        srv.post("/free", {"free_memory": True})
        time.sleep(0.1 + attempt)  # the worker takes the flags when idle (set_flag wakes it)
        entry = srv.run(graph)
        cached = messages(entry).get("execution_cached", {}).get("nodes", [])
        if not cached:
            return entry
        log(f"  alone run served {cached} from the cache; freeing again")
    raise RuntimeError("POST /free did not reset the execution cache")


class Progress(threading.Thread):
    """The server's websocket for this client: the prompt ids whose sampler node (id "6") reported a
    finished step ("progress" messages), so an interrupt can land mid-sampling."""

    def __init__(self, srv):
        super().__init__(daemon=True)
        self.url = srv.url.replace("http://", "ws://") + f"/ws?clientId={srv.client_id}"
        self.sampling: set[str] = set()
        self.ready = threading.Event()

    def run(self) -> None:
        import asyncio

        import aiohttp  # ComfyUI's own dependency

        async def listen():
            async with aiohttp.ClientSession() as session, session.ws_connect(self.url, max_msg_size=0) as ws:
                self.ready.set()
                async for msg in ws:
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        continue  # binary previews
                    d = json.loads(msg.data)
                    if d.get("type") == "progress" and d["data"].get("node") == "6" and d["data"]["value"] >= 1:
                        self.sampling.add(d["data"]["prompt_id"])

        try:
            asyncio.run(listen())
        except Exception:  # the server went away: the run is over
            pass
        finally:
            self.ready.set()


# ---------------------------------------------------------------------------------------------- run

def run(comfyui: Path, n: int = 200, cancel: int = 20, size: int | None = None, steps: int = 3,
        checkpoint: str | None = None, testbed: bool = False, threads: int = 0, seed: int = 0,
        base: Path | None = None, rss_after: int = RSS_AFTER, log=print) -> dict:
    """Queue n graphs at once, cancel `cancel`, compare with alone runs. Returns figures and failures."""
    import comfy_host

    ckpt_path, lora = None, None
    if testbed:
        ckpt_path = testbed_checkpoint()
        if ckpt_path is None:
            raise SystemExit("queue_load.py --testbed: no trained testbed in the cache; run "
                             "benchmarks/effect.py train first")
    elif checkpoint:
        ckpt_path = Path(checkpoint).resolve()
    size = size or (128 if testbed else 64)
    base = Path(base or tempfile.mkdtemp(prefix="pos_queue_load_"))
    ckpt_name = comfy_host.FIXTURE
    if ckpt_path is not None:
        ckpt_name = ckpt_path.name
        (base / "models" / "checkpoints").mkdir(parents=True, exist_ok=True)
        if not (base / "models" / "checkpoints" / ckpt_name).exists():
            (base / "models" / "checkpoints" / ckpt_name).symlink_to(ckpt_path)
    else:  # the fixture's random LoRA fits its UNet
        (base / "models" / "loras").mkdir(parents=True, exist_ok=True)
        lora = "pos_random_lora.safetensors"
        if not (base / "models" / "loras" / lora).exists():
            (base / "models" / "loras" / lora).symlink_to(comfy_host.fixture_lora())
    if n < 3:
        raise ValueError("queue_load needs n >= 3")
    # cancel targets: deletions spread over the queue's second half (still pending when deleted),
    # interrupts spread over the KSampler graphs of the rest; never the first or last graph (the
    # carry-over pair). The graph after an interrupted one is its sibling (same PoS Guidance node,
    # reused from the cache, another seed), so the interrupted run state meets the next sampling.
    n_del, n_int = cancel // 2, cancel - cancel // 2
    inner = list(range(1, n - 2))
    half = [i for i in inner if i >= n // 2]
    deleted = set(half[::max(1, len(half) // max(n_del, 1))][:n_del]) if n_del else set()
    rest = [i for i in inner if not {i - 1, i, i + 1} & deleted and not is_search(i)]
    targets = set(rest[::max(2, len(rest) // max(n_int, 1))][:n_int]) if n_int else set()
    siblings = {t + 1 for t in targets if t + 1 not in deleted | targets}
    siblings |= {i for i in range(2, n - 1) if i % 8 == 6 and i not in deleted and not is_search(i - 1)}
    graphs = make_graphs(n, ckpt_name, size, steps, lora, seed, siblings)
    failures: list[str] = []
    env = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)} if threads else None
    t_start = time.time()
    with comfy_host.server(comfyui, base, env=env) as srv:
        # warm up (checkpoint load, first-call costs of each kind of graph: patches, seed search, maps,
        # batch 2) so that the first measured runs are like the rest; other seeds, so that no load
        # graph is served from the cache
        warm_ids = []
        for k in range(min(WARMUP, n - 1)):
            warm = with_prefix(graphs[k], f"qload/warmup{k}")
            warm["6"]["inputs"]["seed"] += 1
            warm_ids.append(srv.queue(warm)["prompt_id"])
        for pid in warm_ids:
            if srv.wait(pid)["status"]["status_str"] != "success":
                raise RuntimeError(f"a warm-up graph failed; log: {srv.log.read_text()[-3000:]}")
        watch = Progress(srv)
        watch.start()
        watch.ready.wait(30)
        t0 = time.time()
        ids = []
        for i, g in enumerate(graphs):
            r = srv.queue(with_prefix(g, f"qload/p{i:03d}"))
            if "prompt_id" not in r:
                raise RuntimeError(f"graph {i} rejected: {json.dumps(r)[:2000]}")
            ids.append(r["prompt_id"])
        srv.post("/queue", {"delete": [ids[i] for i in sorted(deleted)]})
        index = {pid: i for i, pid in enumerate(ids)}
        interrupted_at: dict[int, float] = {}
        rss20 = None
        trace: list[tuple[int, float]] = []
        live = set(range(n)) - deleted
        while True:
            q = srv.get("/queue")
            running = [index[item[1]] for item in q["queue_running"] if item[1] in index]
            pending = {index[item[1]] for item in q["queue_pending"] if item[1] in index}
            for i in running:  # once its sampler finished a step: mid-run (targeted at that prompt only)
                if i in targets and i not in interrupted_at and ids[i] in watch.sampling:
                    srv.post("/interrupt", {"prompt_id": ids[i]})
                    interrupted_at[i] = time.time()
            done = len(live) - len(running) - len(pending & live)
            if rss20 is None and done >= rss_after:
                rss20 = rss_mib(srv.proc.pid)
                log(f"  {done} runs completed: RSS {rss20:.0f} MiB")
            if done >= len(trace) * TRACE_EVERY:  # RSS every TRACE_EVERY completed runs (a leak is a slope)
                trace.append((done, round(rss_mib(srv.proc.pid), 1)))
            if not running and not pending:
                break
            if srv.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited; log: {srv.log.read_text()[-3000:]}")
            time.sleep(0.02)
        t_load = time.time() - t0
        rss_end = rss_mib(srv.proc.pid)
        trace.append((len(live), round(rss_end, 1)))
        log(f"  queue empty after {t_load:.0f} s: RSS {rss_end:.0f} MiB")
        entries: dict[int, dict] = {}
        for i, pid in enumerate(ids):
            h = srv.get(f"/history/{pid}")
            if pid in h:
                entries[i] = h[pid]
        ran_deleted = sorted(i for i in deleted if i in entries)
        if ran_deleted:
            failures.append(f"deleted prompts ran anyway: {ran_deleted}")
        finished, interrupted, errored = [], [], []
        interrupted_in: dict[str, int] = {}  # the node each interrupt stopped
        for i in sorted(live):
            e = entries.get(i)
            if e is None:
                errored.append((i, "no history entry"))
                continue
            msgs = messages(e)
            if e["status"]["status_str"] == "success":
                finished.append(i)
            elif "execution_interrupted" in msgs:
                interrupted.append(i)
                node = msgs["execution_interrupted"].get("node_type") or "between nodes"
                interrupted_in[node] = interrupted_in.get(node, 0) + 1
            else:
                errored.append((i, json.dumps(msgs.get("execution_error", msgs))[:1500]))
        stray = sorted(set(interrupted) - targets)
        if stray:
            failures.append(f"interrupted prompts that were not targets: {stray}")
        for i, why in errored:
            failures.append(f"prompt {i} failed: {why}\n    graph: {json.dumps(graphs[i])}")
        missed = sorted(targets - set(interrupted))
        if missed:
            log(f"  note: {len(missed)} interrupt targets finished before the interrupt landed: {missed}")
        reused = []  # finished prompts whose PoS Guidance outputs came from the cache
        for i in finished:
            cached = messages(entries[i]).get("execution_cached", {}).get("nodes", [])
            if "6" in cached:
                failures.append(f"prompt {i}: its sampler node was served from the cache")
            if "4" in cached:
                reused.append(i)
        after_interrupt = [i + 1 for i in interrupted if i + 1 in finished]
        after_interrupt_reused = [i for i in after_interrupt if i in reused]
        rss_after_load = rss_end
        # the same graph alone, after an execution cache reset
        t1 = time.time()
        max_rel, mismatches, reports_checked = 0.0, [], 0
        ref_of: dict[int, tuple] = {}
        for k, i in enumerate(finished):
            key = 0 if i == n - 1 else i  # the last graph is the first again: one reference for both
            if key not in ref_of:
                alone = run_alone(srv, with_prefix(graphs[key], f"qload/ref{key:03d}"), log)
                ref_of[key] = (latent_of(srv, alone), report_of(alone))
                if not float(ref_of[key][0].abs().max()) > 0:
                    failures.append(f"graph {key} alone gave an all-zero latent: nothing to compare")
            ref, ref_report = ref_of[key]
            d = rel_diff(latent_of(srv, entries[i]), ref)
            max_rel = max(max_rel, d)
            if not d <= TOL:
                mismatches.append(i)
                failures.append(f"prompt {i}: latent differs from the same graph alone (max rel diff {d:.3g})"
                                f"\n    graph: {json.dumps(graphs[i])}")
            rep = report_of(entries[i])
            if rep is not None or ref_report is not None:
                reports_checked += 1
                if not close(rep, ref_report, 1e-4):
                    mismatches.append(i)
                    failures.append(f"prompt {i}: PoS Attention Maps report differs from the alone run"
                                    f"\n    load:  {json.dumps(rep)[:600]}\n    alone: {json.dumps(ref_report)[:600]}")
            if (k + 1) % 20 == 0:
                log(f"  compared {k + 1}/{len(finished)} with alone runs")
        first_last = None
        if 0 in finished and n - 1 in finished:
            first_last = rel_diff(latent_of(srv, entries[n - 1]), latent_of(srv, entries[0]))
            if not first_last <= TOL:
                failures.append(f"the graph queued first and last gave different latents ({first_last:.3g})")
        t_ref = time.time() - t1
        rss_final = rss_mib(srv.proc.pid)
    growth = 100.0 * (rss_after_load - rss20) / rss20 if rss20 else float("nan")
    if rss20 is None:
        log(f"  note: fewer than {rss_after} runs completed, no RSS growth figure")
    elif not growth < RSS_GROWTH:
        failures.append(f"server RSS grew {growth:.1f} % after the first {rss_after} runs (limit {RSS_GROWTH} %)")
    return {
        "prompts": n, "deleted": len(deleted), "interrupted": len(interrupted), "interrupted_in": interrupted_in, "cancelled":
        len(deleted) + len(interrupted), "finished": len(finished), "errored": len(errored),
        "compared": len(finished), "maps_reports_compared": reports_checked,
        "guidance_reused": len(reused), "after_interrupt": len(after_interrupt),
        "after_interrupt_reused": len(after_interrupt_reused),
        "after_interrupt_mismatches": len(set(after_interrupt) & set(mismatches)), "mismatches": len(set(mismatches)),
        "max_rel_diff": max_rel, "first_last_rel_diff": first_last, "rss_after": rss_after, "rss_after_n_mib": rss20,
        "rss_end_mib": rss_after_load, "rss_growth_pct": growth, "rss_after_alone_runs_mib": rss_final,
        "rss_trace": trace,
        "load_wall_s": t_load, "alone_wall_s": t_ref, "total_wall_s": time.time() - t_start,
        "size": size, "steps": steps, "checkpoint": ckpt_name, "threads": threads or "default",
        "failures": failures,
    }


def table(f: dict) -> str:
    def fmt(v, spec="{}"):
        return "n/a" if v is None else spec.format(v)

    rows = [
        ("prompts queued at once", fmt(f["prompts"])),
        ("cancelled: deleted while pending / interrupted while running",
         f"{f['cancelled']}: {f['deleted']} / {f['interrupted']}"),
        ("interrupts stopped in", ", ".join(f"{k} {v}" for k, v in sorted(f["interrupted_in"].items())) or "n/a"),
        ("finished (compared with the same graph alone)", fmt(f["finished"])),
        ("failed (neither finished nor cancelled)", fmt(f["errored"])),
        ("of them with a PoS Attention Maps report compared", fmt(f["maps_reports_compared"])),
        ("of them reusing a cached PoS Guidance run state", fmt(f["guidance_reused"])),
        ("finished right after an interrupted prompt (of them reusing its PoS Guidance)",
         f"{f['after_interrupt']} ({f['after_interrupt_reused']})"),
        ("mismatches (of them right after an interrupt)", f"{f['mismatches']} ({f['after_interrupt_mismatches']})"),
        ("max relative latent diff vs alone", fmt(f["max_rel_diff"], "{:.3g}")),
        ("first vs last (same graph) relative diff", fmt(f["first_last_rel_diff"], "{:.3g}")),
        (f"server RSS after {f['rss_after']} completed runs (MiB)", fmt(f["rss_after_n_mib"], "{:.0f}")),
        ("server RSS when the queue emptied (MiB)", fmt(f["rss_end_mib"], "{:.0f}")),
        ("RSS growth", fmt(f["rss_growth_pct"], "{:+.2f} %")),
        ("server RSS after the alone runs (MiB)", fmt(f["rss_after_alone_runs_mib"], "{:.0f}")),
        (f"RSS trace (completed runs: MiB)", ", ".join(f"{d}: {m:.0f}" for d, m in f["rss_trace"])),
        ("wall time: load / alone runs / total (s)",
         f"{f['load_wall_s']:.0f} / {f['alone_wall_s']:.0f} / {f['total_wall_s']:.0f}"),
        ("setup", f"{f['checkpoint']}, {f['size']} px, {f['steps']} steps, threads {f['threads']}"),
    ]
    w = max(len(r[0]) for r in rows)
    return "\n".join(f"| {a:<{w}} | {b} |" for a, b in [("figure", "value"), ("-" * w, "---")] + rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200, help="prompts queued at once")
    ap.add_argument("--cancel", type=int, default=20, help="how many to cancel (half deleted, half interrupted)")
    ap.add_argument("--size", type=int, default=0, help="image size in px (default 64; 128 with --testbed)")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--checkpoint", default="", help="checkpoint file (default: the tests' random SD1.5 fixture)")
    ap.add_argument("--testbed", action="store_true", help="the trained testbed checkpoint (benchmarks/effect.py train)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads of the server (0: torch's default)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the graph variations")
    ap.add_argument("--json", default="", help="also write the figures here")
    args = ap.parse_args(argv)
    comfyui = setup()
    f = run(comfyui, n=args.n, cancel=args.cancel, size=args.size or None, steps=args.steps,
            checkpoint=args.checkpoint or None, testbed=args.testbed, threads=args.threads, seed=args.seed,
            log=lambda s: print(s, file=sys.stderr, flush=True))
    print(table(f))
    if args.json:
        Path(args.json).write_text(json.dumps(f, indent=1))
    for msg in f["failures"]:
        print("FAIL:", msg)
    return 1 if f["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
