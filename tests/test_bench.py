"""Host-free tests of the bench runner's pieces: prompt sets, configs, work units and seeds, the graph
of one unit, Parquet shards and resume bookkeeping, summaries. (The Ray run itself: test_host_bench.)"""

from __future__ import annotations

import json
import os

import pytest

from pos_core.bench import config, report, sets, workflow
from pos_core.bench.runner import Options, plan, remaining
from pos_core.bench.store import CONTENT_COLUMNS, Store
from pos_core.bench.units import make_units, seed_for
from pos_core.relations import parse

# ------------------------------------------------------------------------------------------- sets


def test_sr2d_is_visor_sized_and_parses_to_its_relation():
    prompts = sets.sr2d()
    assert len(prompts) == 80 * 79 * 4 == 25280
    assert len({p["prompt"] for p in prompts}) == 25280
    assert len({p["prompt_id"] for p in prompts}) == 25280
    assert prompts[0]["prompt"] == "a person to the left of a bicycle"
    assert "an apple to the right of an orange" in {p["prompt"] for p in prompts}
    for p in prompts[::97]:
        rels = parse(p["prompt"])
        assert [(r.subject, r.relation, r.object) for r in rels] == [(p["subject"], p["relation"], p["object"])], p


def test_limit_is_a_fixed_spread_sample():
    a, b = sets.load("sr2d", limit=40), sets.load("sr2d", limit=40)
    assert a == b and len(a) == 40
    assert len({p["relation"] for p in a}) == 4
    ids = [int(p["prompt_id"][5:]) for p in a]
    assert ids == sorted(ids)


def test_prompt_files(tmp_path):
    txt = tmp_path / "p.txt"
    txt.write_text("a cat left of a dog\n\na cup above a book\n")
    assert sets.load(str(txt)) == [{"prompt_id": "1", "prompt": "a cat left of a dog"},
                                   {"prompt_id": "3", "prompt": "a cup above a book"}]
    jl = tmp_path / "p.jsonl"
    jl.write_text('{"prompt": "a", "id": 7}\n{"prompt": "b", "extra": 1}\n')
    assert [(p["prompt_id"], p["prompt"]) for p in sets.load(str(jl))] == [("7", "a"), ("2", "b")]
    jl.write_text('{"prompt": "a", "id": 1}\n{"prompt": "b", "id": 1}\n')
    with pytest.raises(ValueError, match="appears twice"):
        sets.load(str(jl))
    jl.write_text('{"text": "a"}\n')
    with pytest.raises(ValueError, match=r"p.jsonl:1 needs a string 'prompt'"):
        sets.load(str(jl))
    with pytest.raises(ValueError, match="neither a built-in set"):
        sets.load(str(tmp_path / "missing.txt"))


def test_benchmark_sets_read_their_own_files(tmp_path):
    for name in ("geneval-position", "t2i-spatial", "sr4g-test-seen", "sr4g-test-unseen"):
        with pytest.raises(ValueError, match=f"--prompts {name}:PATH"):
            sets.load(name)
    meta = tmp_path / "evaluation_metadata.jsonl"
    meta.write_text('{"tag": "position", "prompt": "a photo of a dog right of a cat"}\n'
                    '{"tag": "counting", "prompt": "a photo of two cats"}\n')
    assert [p["prompt"] for p in sets.load(f"geneval-position:{meta}")] == ["a photo of a dog right of a cat"]
    trip = tmp_path / "triplets.jsonl"
    rows = [{"image_id": i, "file_name": "x.jpg", "subject": "cat", "relation": "left", "object": "dog",
             "subject_count": 1, "object_count": 1, "caption": f"a cat to the left of a dog {s}", "split": s}
            for i, s in enumerate(("train", "test_seen", "test_unseen", "test_unseen"))]
    trip.write_text("".join(json.dumps(r) + "\n" for r in rows))
    pytest.importorskip("pos_core.sr4g.dataset")
    unseen = sets.load(f"sr4g-test-unseen:{tmp_path}")
    assert [(p["prompt_id"], p["prompt"]) for p in unseen] == [("sr4g-test_unseen-0", "a cat to the left of a dog test_unseen")]
    assert [p["prompt"] for p in sets.load(f"sr4g-test-seen:{trip}")] == ["a cat to the left of a dog test_seen"]


# ----------------------------------------------------------------------------------- units, seeds


def test_seeds_are_deterministic_shared_across_configs_and_distinct():
    prompts = [{"prompt_id": f"p{i}", "prompt": f"prompt {i}"} for i in range(50)]
    units = make_units(prompts, ["a", "b"], seeds=4)
    assert len(units) == 50 * 4 * 2 and len({u.key for u in units}) == len(units)
    assert units == make_units(prompts, ["a", "b"], seeds=4)
    by = {(u.config, u.prompt_id, u.seed_index): u.seed for u in units}
    assert all(by[("a", p, k)] == by[("b", p, k)] for (_, p, k) in by)
    assert len({u.seed for u in units if u.config == "a"}) == 200
    assert seed_for("p1", 0) != seed_for("p1", 0, base_seed=1)
    assert 0 <= seed_for("p1", 3) < 2**48
    assert len({u.image for u in units}) == len(units)
    with pytest.raises(ValueError, match="--seeds"):
        make_units(prompts, ["a"], seeds=0)


# ---------------------------------------------------------------------------------------- configs

def test_configs_defaults_shipped_workflows_and_digest(tmp_path):
    data = {"defaults": {"workflow": "pos_psg_sd15", "checkpoint": "m.safetensors", "overrides": {"steps": 20}},
            "configs": [{"name": "base", "overrides": {"guided": False}},
                        {"name": "psg", "overrides": {"scale": 10}}],
            "scoring": {"detector": "owl"}}
    cfgs, scoring = config.parse_configs(data)
    assert [c.name for c in cfgs] == ["base", "psg"] and scoring == {"detector": "owl"}
    assert cfgs[0].overrides == {"steps": 20, "guided": False} and cfgs[1].overrides == {"steps": 20, "scale": 10}
    assert cfgs[0].workflow_name == "pos_psg_sd15" and "nodes" in cfgs[0].workflow
    assert cfgs[0].digest() != cfgs[1].digest()
    again, _ = config.parse_configs(data)
    assert again[1].digest() == cfgs[1].digest()
    own = tmp_path / "mine.json"
    own.write_text(json.dumps(API))
    mapped, _ = config.parse_configs({"configs": {"x": {"workflow": "mine.json"}}}, base=str(tmp_path))
    assert mapped[0].workflow == API and mapped[0].checkpoint is None


@pytest.mark.parametrize("data, message", [
    ({"config": []}, "needs a 'configs:'"),
    ({"configs": [], "extra": 1}, "unknown top-level"),
    ({"configs": []}, "non-empty list"),
    ({"configs": [{"name": "a b", "workflow": "pos_psg_sd15"}]}, "must be letters"),
    ({"configs": [{"name": "a"}]}, "needs a workflow"),
    ({"configs": [{"name": "a", "workflow": "pos_psg_sd15", "scale": 3}]}, "put node settings under overrides"),
    ({"configs": [{"name": "a", "workflow": "nope"}]}, "neither a file nor a shipped workflow"),
    ({"configs": [{"name": "a", "workflow": "pos_psg_sd15"}, {"name": "a", "workflow": "pos_psg_sd15"}]}, "unique"),
    ({"configs": [{"name": "a", "workflow": "pos_psg_sd15"}], "scoring": {"detectr": "x"}}, "scoring takes"),
])
def test_config_errors_name_the_problem(data, message):
    with pytest.raises(ValueError, match=message):
        config.parse_configs(data)


def test_plan_needs_a_detector_and_checks_everything_first(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("configs:\n  - {name: a, workflow: pos_psg_sd15}\n")
    opts = Options(prompts="sr2d", configs=str(cfg), out=str(tmp_path / "o"), seeds=2, limit=3)
    with pytest.raises(ValueError, match="needs a detector"):
        plan(opts)
    opts.detector = "owl"
    units, configs, scoring, manifest = plan(opts)
    assert len(units) == 6 and scoring["detector"] == "owl" and manifest["units"] == 6
    cfg.write_text("configs: [unclosed\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        plan(opts)


# ------------------------------------------------------------------------------ the graph of a unit

# pos_psg_sd15 in API format, as ComfyUI converts it (ids of the shipped workflow)
API = {
    "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5.safetensors"}},
    "2": {"class_type": "PoSRelationsFromPrompt", "inputs": {"text": "a cat to the left of a dog", "clip": ["1", 1]}},
    "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["1", 1]}},
    "4": {"class_type": "PoSGuidance", "inputs": {"model": ["1", 0], "relations": ["2", 1], "scale": 20.0,
                                                  "guided_fraction": 0.5, "loss_scale": -1.0, "smoothing": True,
                                                  "attention_level": "auto"}},
    "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 1}},
    "6": {"class_type": "KSampler", "inputs": {"model": ["4", 0], "seed": 42, "steps": 50, "cfg": 7.5,
                                               "sampler_name": "euler", "scheduler": "normal", "positive": ["2", 0],
                                               "negative": ["3", 0], "latent_image": ["5", 0], "denoise": 1.0}},
    "7": {"class_type": "VAEDecode", "inputs": {"samples": ["6", 0], "vae": ["1", 2]}},
    "8": {"class_type": "SaveImage", "inputs": {"images": ["7", 0], "filename_prefix": "pos_psg"}},
    "9": {"class_type": "PoSAttentionMaps", "inputs": {"attention": ["4", 1], "images": ["7", 0]}},
    "20": {"class_type": "PoSDetectorLoader", "inputs": {"detector": "gdino", "sam": "sam"}},
    "21": {"class_type": "PoSScore", "inputs": {"images": ["7", 0], "relations": ["2", 1], "detector": ["20", 0]}},
}


def test_unit_graph_keeps_what_makes_the_image_and_injects_the_unit():
    g = workflow.prepare(API, "a cup above a book", 1234, "fixture.safetensors",
                         {"steps": 2, "width": 64, "height": 64, "scale": 5.0, "fraction": 0.25,
                          "negative": "ugly", "KSampler.sampler_name": "dpmpp_2m", "5.batch_size": 1},
                         prefix="pos_bench/psg")
    assert set(g) == {"1", "2", "3", "4", "5", "6", "7", workflow.SAVE_NODE}
    assert g[workflow.SAVE_NODE] == {"class_type": "SaveImage",
                                     "inputs": {"images": ["7", 0], "filename_prefix": "pos_bench/psg"}}
    assert g["2"]["inputs"]["text"] == "a cup above a book" and g["3"]["inputs"]["text"] == "ugly"
    assert g["6"]["inputs"]["seed"] == 1234 and g["6"]["inputs"]["steps"] == 2
    assert g["6"]["inputs"]["sampler_name"] == "dpmpp_2m" and g["1"]["inputs"]["ckpt_name"] == "fixture.safetensors"
    assert g["5"]["inputs"] == {"width": 64, "height": 64, "batch_size": 1}
    assert g["4"]["inputs"]["scale"] == 5.0 and g["4"]["inputs"]["guided_fraction"] == 0.25
    assert API["6"]["inputs"]["seed"] == 42, "the config's workflow is not modified"


def test_unguided_removes_guidance_and_rewires_the_model():
    g = workflow.prepare(API, "a cat below a dog", 7, overrides={"guided": False, "scale": 3})
    assert "4" not in g and g["6"]["inputs"]["model"] == ["1", 0]
    assert all(v["class_type"] != "PoSGuidance" for v in g.values())
    assert g["2"]["inputs"]["text"] == "a cat below a dog", "relations node still encodes the prompt"
    plain = {k: v for k, v in API.items() if k not in ("4", "9")}
    plain["6"] = {**API["6"], "inputs": {**API["6"]["inputs"], "model": ["1", 0]}}
    with pytest.raises(ValueError, match="no PoS Guidance node"):
        workflow.prepare(plain, "x", 1, overrides={"guided": True})


def test_unit_graph_errors():
    with pytest.raises(ValueError, match="unknown override"):
        workflow.prepare(API, "x", 1, overrides={"stepz": 3})
    with pytest.raises(ValueError, match="no node of the workflow takes 'ckpt_name'"):
        workflow.prepare({k: v for k, v in API.items() if k != "20"}, "x", 1, overrides={"Nope.ckpt_name": 1})
    two = {**API, "17": {"class_type": "VAEDecode", "inputs": {"samples": ["6", 0], "vae": ["1", 2]}}}
    assert workflow.prepare(two, "x", 1)[workflow.SAVE_NODE]["inputs"]["images"] == ["7", 0], "the one SaveImage's"
    del two["8"]
    with pytest.raises(ValueError, match="2 VAE Decode nodes"):
        workflow.prepare(two, "x", 1)
    g = workflow.prepare(two, "x", 1, overrides={"output": "17"})
    assert g[workflow.SAVE_NODE]["inputs"]["images"] == ["17", 0] and "7" not in g
    with pytest.raises(ValueError, match="node '99' is not in the workflow"):
        workflow.prepare(API, "x", 1, overrides={"output": 99})


# ------------------------------------------------------------------------------ shards and resume

def _row(key: str, **kw) -> dict:
    config, pid, k = key.split("/")
    return {"key": key, "config": config, "prompt_id": pid, "prompt": "a cat left of a dog", "seed_index": int(k),
            "seed": 5, "status": "ok", "image": f"images/{config}/{pid}_s{k}.png", "pse": 0.5, "visor": True,
            "geneval": False, "t2i_compbench": 0.2, "missing_subject": False, "missing_object": False,
            "relations": json.dumps([{"subject": "cat", "object": "dog", "relation": "left", "pse": 0.5,
                                      "missing_subject": False, "missing_object": False, "visor": True,
                                      "geneval": False, "t2i_compbench": 0.2}]), "attempts": 1, **kw}


def test_shards_commit_atomically_and_resume_skips_exactly_the_finished_units(tmp_path):
    prompts = [{"prompt_id": f"p{i}", "prompt": "a cat left of a dog"} for i in range(5)]
    units = make_units(prompts, ["a", "b"], seeds=2)
    store = Store(str(tmp_path))
    assert store.done() == set() and remaining(units, set()) == units
    first = [_row(u.key) for u in units[:7]]
    store.write(first[:4])
    store.write(first[4:])
    (tmp_path / "shards" / ".part-000009-x.parquet.tmp").write_bytes(b"half a file")  # a killed write
    done = store.done()
    assert done == {u.key for u in units[:7]}
    rest = remaining(units, done)
    assert rest == units[7:]
    store.write([_row(u.key, status="failed", error="boom", attempts=3) for u in rest])
    rows = store.rows()
    assert [r["key"] for r in rows] == sorted(u.key for u in units)
    assert remaining(units, store.done()) == []
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(failed) == len(rest) and all(r["error"] == "boom" and r["attempts"] == 3 for r in failed)
    assert "attempts" not in CONTENT_COLUMNS and "key" in CONTENT_COLUMNS


def test_manifest_refuses_a_different_run(tmp_path):
    store = Store(str(tmp_path))
    m = {"prompts": "sr2d", "seeds": 4, "configs": {"a": "123"}}
    store.check_manifest(m)
    store.check_manifest(dict(m))
    with pytest.raises(ValueError, match="different configs"):
        store.check_manifest({**m, "configs": {"a": "456"}})
    with pytest.raises(ValueError, match="different seeds"):
        store.check_manifest({**m, "seeds": 2})


def test_summaries_per_config_and_side_by_side(tmp_path):
    rows = [_row(f"psg/p{i}/0") for i in range(3)] + [_row(f"base/p{i}/0", pse=0.0) for i in range(2)]
    rows.append(_row("base/p2/0", status="failed", error="boom"))
    table = report.write(str(tmp_path), rows, ["base", "psg"])
    lines = table.splitlines()
    assert lines[0] == "| metric | base | psg |"
    assert "| units (failed) | 3 (1) | 3 (0) |" in lines
    assert "| images | 2 | 3 |" in lines
    for f in ("summary.md", "chart.png", "summary/base/summary.md", "summary/psg/chart.png", "summary/psg/summary.json"):
        assert os.path.exists(tmp_path / f), f


def test_unit_graph_is_the_same_in_every_process():
    """ComfyUI embeds the graph in the PNG, so its node order must not depend on Python's hash seed."""
    import subprocess
    import sys

    code = ("import json, sys; sys.path.insert(0, 'tests'); from test_bench import API; "
            "from pos_core.bench.workflow import prepare; "
            "print(json.dumps(prepare(API, 'a cat left of a dog', 3, overrides={'guided': False})))")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    outs = {subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": str(h)}).stdout for h in (1, 2, 3)}
    assert len(outs) == 1


def test_cli_help_and_user_errors_without_a_traceback(tmp_path, capsys):
    from pos_core.__main__ import main

    with pytest.raises(SystemExit) as e:
        main(["bench", "--help"])
    assert e.value.code == 0 and "run" in capsys.readouterr().out
    cfg = tmp_path / "c.yaml"
    cfg.write_text("configs:\n  - {name: a, workflow: pos_psg_sd15}\nscoring: {detector: owl}\n")
    out = str(tmp_path / "o")
    assert main(["bench", "run", "--prompts", "nope", "--configs", str(cfg), "--out", out]) == 2
    assert "bench: --prompts 'nope' is neither a built-in set" in capsys.readouterr().err
    assert main(["bench", "run", "--prompts", "t2i-spatial", "--configs", str(cfg), "--out", out]) == 2
    assert "pass --prompts t2i-spatial:PATH" in capsys.readouterr().err
    cfg.write_text("configs:\n  - {name: a, workflow: pos_psg_sd15, overrides: {steps: 2}}\nscoring: {detector: owl}\n")
    Store(out).check_manifest({"prompts": "sr2d", "limit": 2, "seeds": 1, "base_seed": 0, "units": 2,
                               "configs": {"a": "0"}, "scoring": {}})
    assert main(["bench", "run", "--prompts", "sr2d", "--limit", "2", "--seeds", "1", "--configs", str(cfg),
                 "--out", out]) == 2
    assert "holds a run with different configs, scoring" in capsys.readouterr().err


class _FailingImport:
    """A meta path finder that makes `import NAME` raise the given error, as a broken install would."""

    def __init__(self, name: str, error: ImportError):
        self.name, self.error = name, error

    def find_spec(self, fullname, path=None, target=None):
        if fullname == self.name:
            raise self.error
        return None


def test_bench_dependency_errors_name_the_module_and_the_cause(tmp_path, monkeypatch, capsys):
    """pyarrow 26 beside ComfyUI-Manager's numpy 1.26 raises a plain ImportError (its .name is None):
    the message names pyarrow and quotes the cause instead of 'None is not installed'."""
    import sys

    from pos_core.__main__ import main
    from pos_core.bench.cli import import_problem

    numpy_error = ImportError("pyarrow requires NumPy 2.0 or newer, found 1.26.4")
    monkeypatch.delitem(sys.modules, "pyarrow", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_FailingImport("pyarrow", numpy_error), *sys.meta_path])
    msg = import_problem("pyarrow")
    assert msg.startswith("pyarrow ") and "None" not in msg
    assert "does not import: ImportError: pyarrow requires NumPy 2.0 or newer, found 1.26.4" in msg
    assert "pip install -r requirements-bench.txt" in msg
    # a dependency of the module missing is not the module missing
    monkeypatch.setattr(sys, "meta_path", [_FailingImport("pyarrow", ModuleNotFoundError(
        "No module named 'numpy'", name="numpy")), *sys.meta_path])
    assert "pyarrow" in import_problem("pyarrow") and "does not import: ModuleNotFoundError: No module named 'numpy'" \
        in import_problem("pyarrow")
    # the module itself missing; and the command says so, first module first, without a traceback
    monkeypatch.setitem(sys.modules, "ray", None)
    assert import_problem("ray") == "ray is not installed: pip install -r requirements-bench.txt"
    cfg = tmp_path / "c.yaml"
    cfg.write_text("configs:\n  - {name: a, workflow: pos_psg_sd15}\n")
    assert main(["bench", "run", "--prompts", "sr2d", "--configs", str(cfg), "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err == "bench: ray is not installed: pip install -r requirements-bench.txt\n"
    monkeypatch.delitem(sys.modules, "ray")
    monkeypatch.setattr(sys, "meta_path", [_FailingImport("ray", numpy_error), *sys.meta_path])
    assert main(["bench", "run", "--prompts", "sr2d", "--configs", str(cfg), "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.startswith("bench: ray ")
