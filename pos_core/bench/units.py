"""Work units (prompt x seed x config), their deterministic seeds, keys and image paths."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Unit:
    """One image to make: a prompt, the k-th seed of it, under one config."""

    config: str
    prompt_id: str
    prompt: str
    seed_index: int
    seed: int

    @property
    def key(self) -> str:
        return f"{self.config}/{self.prompt_id}/{self.seed_index}"

    @property
    def image(self) -> str:
        """Image path relative to the output folder."""
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in self.prompt_id)
        return f"images/{self.config}/{safe}_s{self.seed_index}.png"

    def to_dict(self) -> dict:
        return {**asdict(self), "key": self.key, "image": self.image}


def seed_for(prompt_id: str, seed_index: int, base_seed: int = 0) -> int:
    """Seed of the k-th image of a prompt: a hash of (base seed, prompt id, k), the same under every
    config so configs are compared on the same noise, and independent of run order and worker."""
    digest = hashlib.sha256(f"{base_seed}:{prompt_id}:{seed_index}".encode()).digest()
    return int.from_bytes(digest[:6], "big") % (2**48)


def make_units(prompts: list[dict], configs: list[str], seeds: int, base_seed: int = 0) -> list[Unit]:
    """Every prompt x seed x config, prompt-major (all configs of a prompt are made close together)."""
    if seeds < 1:
        raise ValueError("--seeds must be at least 1")
    return [Unit(c, p["prompt_id"], p["prompt"], k, seed_for(p["prompt_id"], k, base_seed))
            for p in prompts for k in range(seeds) for c in configs]
