"""The works-with effect table's paired gain (benchmarks/patch_table.py): host-free."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import patch_table  # noqa: E402


def test_paired_gain_mean_and_interval():
    a = [0.0] * 50 + [1.0] * 50
    b = [1.0] * 80 + [0.0] * 20
    mean, lo, hi = patch_table.paired_gain(a, b)
    assert mean == pytest.approx(0.3)
    assert lo < mean < hi and hi - lo < 0.4
    same = patch_table.paired_gain(a, a)
    assert same == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        patch_table.paired_gain([1.0], [1.0, 0.0])


def test_row_of_a_results_folder(tmp_path):
    import json

    rows_u = [{"correct": i % 2 == 0} for i in range(10)]
    rows_g = [{"correct": True} for _ in range(10)]
    way = {"n": 10, "relation_accuracy": [0.5, 0.2, 0.8], "object_accuracy": [1.0, 1.0, 1.0],
           "seconds_per_image": 1.0}
    report = {"patch": "FreeU_V2", "ways": {"unguided": dict(way, raw={"rows": rows_u}),
                                            "psg@20": dict(way, raw={"rows": rows_g})}}
    (tmp_path / "results.json").write_text(json.dumps(report))
    line = patch_table.row(tmp_path)
    assert line.startswith("| FreeU_V2 | 10 |") and "**+50.0**" in line
