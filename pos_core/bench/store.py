"""Results on disk: Parquet shards of one row per unit, committed atomically, and the run manifest.

A unit is finished once its row is in a committed shard; a restarted run skips exactly those."""

from __future__ import annotations

import json
import os
import uuid

COLUMNS = [  # (name, pyarrow type name)
    ("key", "string"), ("config", "string"), ("prompt_id", "string"), ("prompt", "string"),
    ("seed_index", "int64"), ("seed", "int64"), ("status", "string"), ("error", "string"),
    ("image", "string"), ("image_sha256", "string"), ("width", "int64"), ("height", "int64"),
    ("pse", "float64"), ("visor", "bool"), ("geneval", "bool"), ("t2i_compbench", "float64"),
    ("missing_subject", "bool"), ("missing_object", "bool"), ("relations", "string"),
    ("config_digest", "string"), ("attempts", "int64"), ("worker", "string"), ("gen_seconds", "float64"),
    ("score_seconds", "float64"),
]
# Bookkeeping that may differ between an interrupted-and-resumed run and an uninterrupted one.
RUN_COLUMNS = {"attempts", "worker", "gen_seconds", "score_seconds"}
CONTENT_COLUMNS = [c for c, _ in COLUMNS if c not in RUN_COLUMNS]


def _schema():
    import pyarrow as pa

    return pa.schema([(name, getattr(pa, "bool_" if typ == "bool" else typ)()) for name, typ in COLUMNS])


class Store:
    """OUT/shards/part-*.parquet (rows) and OUT/run.json (what the run is)."""

    def __init__(self, out: str):
        self.out = out
        self.shards = os.path.join(out, "shards")
        os.makedirs(self.shards, exist_ok=True)

    def check_manifest(self, manifest: dict) -> None:
        """Write run.json on the first run; a restart must describe the same run (same units, same configs)."""
        path = os.path.join(self.out, "run.json")
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                old = json.load(f)
            diff = sorted(k for k in set(old) | set(manifest) if old.get(k) != manifest.get(k))
            if diff:
                raise ValueError(f"--out {self.out!r} holds a run with different {', '.join(diff)}; resume with "
                                 "the same prompts, seeds and configs, or use a new --out")
            return
        tmp = f"{path}.{uuid.uuid4().hex}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=1, sort_keys=True)
        os.replace(tmp, path)

    def files(self) -> list[str]:
        return sorted(os.path.join(self.shards, f) for f in os.listdir(self.shards)
                      if f.startswith("part-") and f.endswith(".parquet"))

    def rows(self) -> list[dict]:
        """Every committed row, one per unit (first commit wins), sorted by key."""
        import pyarrow.parquet as pq

        seen: dict[str, dict] = {}
        for path in self.files():
            for row in pq.read_table(path).to_pylist():
                seen.setdefault(row["key"], row)
        return [seen[k] for k in sorted(seen)]

    def done(self) -> set[str]:
        """Keys of the units with a committed row."""
        import pyarrow.parquet as pq

        keys: set[str] = set()
        for path in self.files():
            keys.update(pq.read_table(path, columns=["key"]).column("key").to_pylist())
        return keys

    def write(self, rows: list[dict]) -> str | None:
        """Commit rows as a new shard: written to a temporary name, then renamed (atomic)."""
        if not rows:
            return None
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pylist([{c: r.get(c) for c, _ in COLUMNS} for r in rows], schema=_schema())
        name = f"part-{len(self.files()):06d}-{uuid.uuid4().hex[:8]}.parquet"
        tmp = os.path.join(self.shards, f".{name}.tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, os.path.join(self.shards, name))
        return name
