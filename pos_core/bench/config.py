"""The configs YAML: named generation configs (workflow, checkpoint, overrides) and scoring settings."""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
SCORING_KEYS = {"detector", "sam", "depth", "models_dir", "threshold", "device"}


@dataclass
class Config:
    """One generation config: a workflow (either format), a checkpoint and overrides."""

    name: str
    workflow: dict
    workflow_name: str
    checkpoint: str | None = None
    overrides: dict = field(default_factory=dict)

    def digest(self) -> str:
        """Identifies what this config generates; a resumed run refuses a config that changed."""
        blob = json.dumps([self.workflow, self.checkpoint, self.overrides], sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def load_workflow(ref: str, base: str = ".") -> tuple[dict, str]:
    """A workflow by shipped name (`pos_psg_sd15`) or path (relative to the configs file); (json, name)."""
    candidates = [Path(base) / ref, Path(ref), WORKFLOWS / (ref if ref.endswith(".json") else ref + ".json")]
    for p in candidates:
        if p.is_file():
            try:
                wf = json.loads(p.read_text(encoding="utf-8"))
            except json.JSONDecodeError as e:
                raise ValueError(f"workflow {str(p)!r} is not JSON: {e.msg}") from e
            if not isinstance(wf, dict) or not wf:
                raise ValueError(f"workflow {str(p)!r} is neither a UI-format nor an API-format workflow")
            return wf, p.stem
    shipped = ", ".join(sorted(q.stem for q in WORKFLOWS.glob("*.json")))
    raise ValueError(f"workflow {ref!r} is neither a file nor a shipped workflow ({shipped})")


def parse_configs(data, base: str = ".") -> tuple[list[Config], dict]:
    """Configs and scoring settings of a parsed YAML document:
    `configs:` a list of {name, workflow, checkpoint?, overrides?} (or a mapping name -> the rest),
    optional `defaults:` merged into every config, optional `scoring:` {detector, sam, depth, ...}."""
    if not isinstance(data, dict) or "configs" not in data:
        raise ValueError("configs file needs a 'configs:' list of {name, workflow, checkpoint, overrides}")
    unknown = set(data) - {"configs", "defaults", "scoring"}
    if unknown:
        raise ValueError(f"configs file: unknown top-level key(s) {sorted(unknown)}; "
                         "use configs, defaults, scoring")
    raw = data["configs"]
    if isinstance(raw, dict):
        raw = [{"name": k, **(v or {})} for k, v in raw.items()]
    if not isinstance(raw, list) or not raw:
        raise ValueError("configs file: 'configs' must be a non-empty list")
    defaults = data.get("defaults") or {}
    out = []
    for i, c in enumerate(raw):
        if not isinstance(c, dict):
            raise ValueError(f"configs[{i}] must be a mapping with name and workflow")
        c = {**defaults, **c, "overrides": {**(defaults.get("overrides") or {}), **(c.get("overrides") or {})}}
        name = str(c.get("name", ""))
        if not NAME.match(name):
            raise ValueError(f"configs[{i}]: name {name!r} must be letters, digits, '_', '-' or '.'")
        if "workflow" not in c:
            raise ValueError(f"config {name!r} needs a workflow (a shipped name or a path)")
        extra = set(c) - {"name", "workflow", "checkpoint", "overrides"}
        if extra:
            raise ValueError(f"config {name!r}: unknown key(s) {sorted(extra)}; put node settings under overrides")
        if not isinstance(c["overrides"], dict):
            raise ValueError(f"config {name!r}: overrides must be a mapping")
        wf, wf_name = load_workflow(str(c["workflow"]), base)
        out.append(Config(name, wf, wf_name, c.get("checkpoint"), dict(c["overrides"])))
    names = [c.name for c in out]
    if len(set(names)) != len(names):
        raise ValueError(f"configs file: config names must be unique, got {names}")
    scoring = data.get("scoring") or {}
    if not isinstance(scoring, dict) or set(scoring) - SCORING_KEYS:
        raise ValueError(f"configs file: scoring takes {sorted(SCORING_KEYS)}")
    return out, scoring


def load_configs(path: str) -> tuple[list[Config], dict]:
    """Configs and scoring settings of a YAML file."""
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as e:
        raise ValueError(f"cannot read --configs {path!r}: {e.strerror}") from e
    except yaml.YAMLError as e:
        raise ValueError(f"--configs {path!r} is not valid YAML: {e}") from e
    return parse_configs(data, os.path.dirname(os.path.abspath(path)))
