"""The Ray actors: generation workers (one ComfyUI server each, one GPU each on a GPU cluster) and
scoring workers (models loaded once). Ray restarts a killed actor; its unit is retried by the runner."""

from __future__ import annotations

import os

import ray

from .generate import GenerationWorker
from .scoring import ScoringWorker

PACK_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GenerationActor = ray.remote(GenerationWorker)
ScoringActor = ray.remote(ScoringWorker)


def _runtime_env() -> dict:
    """Workers import pos_core from this pack's folder (the same path on every node of a cluster)."""
    path = os.pathsep.join(p for p in (PACK_ROOT, os.environ.get("PYTHONPATH", "")) if p)
    return {"env_vars": {"PYTHONPATH": path}}


def generation_actors(specs: list[dict], gpus: float, max_restarts: int):
    """One actor per spec: `gpus` GPUs each (Ray sets CUDA_VISIBLE_DEVICES, so its server sees only
    its own), else one CPU each."""
    res = {"num_gpus": gpus, "num_cpus": 0} if gpus else {"num_cpus": 1}
    return [GenerationActor.options(max_restarts=max_restarts, max_task_retries=0, runtime_env=_runtime_env(),
                                    name=None, **res).remote(spec) for spec in specs]


def scoring_actors(spec: dict, n: int, gpus: float, max_restarts: int):
    """`n` scoring actors with `gpus` GPUs each (0: on the CPU, not counted against the CPUs Ray schedules)."""
    return [ScoringActor.options(max_restarts=max_restarts, max_task_retries=0, runtime_env=_runtime_env(),
                                 num_gpus=gpus, num_cpus=0).remote(spec) for _ in range(n)]
