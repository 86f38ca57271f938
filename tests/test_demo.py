"""Host-free tests of the demo's pure parts (pos_core/demo.py): prompts, inputs and their errors, ports,
the graph of one image, verdicts, the table and the grid."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pos_core import demo, scenes
from pos_core.comfy_client import api_to_ui, is_ui_format, ui_to_api
from pos_core.relations import parse

ROOT = Path(__file__).resolve().parents[1]


def test_builtin_prompts_are_held_out_relations_the_parser_binds():
    prompts = demo.builtin_prompts()
    assert len(prompts) >= 16 and len(set(prompts)) == len(prompts)
    _, held = scenes.pair_split(0)
    train, _ = scenes.pair_split(0)
    seen_rel = set()
    for p in prompts:
        rels = parse(p)
        assert len(rels) == 1, p
        r = rels[0]
        assert (r.subject, r.object) in held and (r.subject, r.object) not in train, p
        seen_rel.add(r.relation)
    assert seen_rel == set(scenes.RELATIONS)


def test_checkpoint_prompts_parse():
    assert len(demo.CHECKPOINT_PROMPTS) >= 16
    for p in demo.CHECKPOINT_PROMPTS:
        assert parse(p), p


def test_read_prompts(tmp_path):
    f = tmp_path / "p.txt"
    f.write_text("# mine\na cat to the left of a dog\n\n  a cup above a clock \n")
    assert demo.read_prompts(str(f)) == ["a cat to the left of a dog", "a cup above a clock"]
    f.write_text("a cat to the left of a dog\na cat and a dog\n")
    with pytest.raises(demo.DemoError, match="'a cat and a dog' has no spatial relation"):
        demo.read_prompts(str(f))
    with pytest.raises(demo.DemoError, match="cannot read"):
        demo.read_prompts(str(tmp_path / "nope.txt"))
    f.write_text("# only a comment\n")
    with pytest.raises(demo.DemoError, match="no prompts"):
        demo.read_prompts(str(f))


def test_unknown_checkpoint_lists_the_files_there(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("a.safetensors", "sub/b.ckpt", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert demo.checkpoint_files(tmp_path) == ["a.safetensors", "sub/b.ckpt"]
    assert demo.find_checkpoint("sub/b.ckpt", tmp_path) == "sub/b.ckpt"
    with pytest.raises(demo.DemoError) as e:
        demo.find_checkpoint("c.safetensors", tmp_path)
    assert "no 'c.safetensors'" in str(e.value) and "a.safetensors" in str(e.value) and "sub/b.ckpt" in str(e.value)
    with pytest.raises(demo.DemoError, match=r"\(none\)"):
        demo.find_checkpoint("c.safetensors", tmp_path / "empty")


def test_busy_port_gives_another(capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        port = demo.pick_port(busy)
        assert port != busy and demo.port_free(port)
    assert f"port {busy} is busy" in capsys.readouterr().err
    free = demo.pick_port(0)
    assert demo.pick_port(free) == free


def test_no_comfyui_and_no_network_says_set_comfyui_path(tmp_path, monkeypatch):
    monkeypatch.delenv("COMFYUI_PATH", raising=False)
    monkeypatch.setenv("POS_CACHE", str(tmp_path))
    monkeypatch.setattr(demo, "COMFYUI_URL", str(tmp_path / "no-such-repo"))  # fails like an unreachable host
    with pytest.raises(demo.DemoError, match="set COMFYUI_PATH"):
        demo.comfyui_checkout()
    assert list(tmp_path.iterdir()) == []  # no half clone left behind
    monkeypatch.setenv("COMFYUI_PATH", str(tmp_path))
    with pytest.raises(demo.DemoError, match="has no main.py"):
        demo.comfyui_checkout()
    (tmp_path / "main.py").write_text("")
    assert demo.comfyui_checkout() == tmp_path.resolve()


def test_cached_clone_is_reused(tmp_path, monkeypatch):
    monkeypatch.delenv("COMFYUI_PATH", raising=False)
    monkeypatch.setenv("POS_CACHE", str(tmp_path))
    dest = tmp_path / f"ComfyUI-{demo.COMFYUI_VERSION}"
    dest.mkdir()
    (dest / "main.py").write_text("")
    monkeypatch.setattr(demo, "COMFYUI_URL", str(tmp_path / "no-such-repo"))
    assert demo.comfyui_checkout() == dest


def object_info() -> dict:
    """A minimal /object_info for the nodes of the demo's graphs (widget order as the workflows store it)."""
    def node(req: dict, opt: dict | None = None, out=()):
        return {"input": {"required": req, "optional": opt or {}}, "output": list(out),
                "output_name": list(out), "output_node": False}

    i, f, s = ("INT", {"default": 0}), ("FLOAT", {"default": 0.0}), ("STRING", {"default": ""})
    return {
        "CheckpointLoaderSimple": node({"ckpt_name": (["x"], {})}, out=("MODEL", "CLIP", "VAE")),
        "EmptyLatentImage": node({"width": i, "height": i, "batch_size": i}, out=("LATENT",)),
        "PoSDetectorLoader": node({"detector": (["d"], {}), "sam": (["none"], {})}, out=("POS_DETECTOR",)),
        "PoSRelationsFromPrompt": node({"clip": ("CLIP", {}), "text": s}, out=("CONDITIONING", "POS_RELATIONS")),
        "CLIPTextEncode": node({"text": s, "clip": ("CLIP", {})}, out=("CONDITIONING",)),
        "PoSGuidance": node({"model": ("MODEL", {}), "relations": ("POS_RELATIONS", {}),
                             "scale": ("FLOAT", {"default": 20.0}), "guided_fraction": ("FLOAT", {"default": 0.5}),
                             "loss_scale": ("FLOAT", {"default": -1.0}), "smoothing": ("BOOLEAN", {"default": True}),
                             "attention_level": (["auto"], {"default": "auto"})},
                            {"blocks": ("STRING", {"default": "auto"}), "softmax": (["text"], {"default": "text"})},
                            out=("MODEL", "POS_RUN")),
        "PoSAttentionCapture": node({"model": ("MODEL", {}), "attention_level": (["auto"], {}),
                                     "blocks": s, "softmax": (["text"], {})}, out=("MODEL", "POS_RUN")),
        "KSampler": node({"model": ("MODEL", {}), "seed": i, "steps": i, "cfg": f, "sampler_name": (["euler"], {}),
                          "scheduler": (["normal"], {}), "positive": ("CONDITIONING", {}),
                          "negative": ("CONDITIONING", {}), "latent_image": ("LATENT", {}), "denoise": f},
                         out=("LATENT",)),
        "PoSSeedSearch": node({"model": ("MODEL", {}), "positive": ("CONDITIONING", {}),
                               "negative": ("CONDITIONING", {}), "latent_image": ("LATENT", {}),
                               "relations": ("POS_RELATIONS", {}), "seed": i,
                               "candidates": ("INT", {"default": 8}), "mode": (["attention", "pse"], {"default": "attention"}),
                               "steps": ("INT", {"default": 20}), "search_steps": ("INT", {"default": 4}),
                               "cfg": ("FLOAT", {"default": 7.0}), "sampler_name": (["euler"], {}),
                               "scheduler": (["normal"], {}), "batch_size": ("INT", {"default": 0})},
                              {"vae": ("VAE", {}), "detector": ("POS_DETECTOR", {}), "depth_model": ("POS_DEPTH", {})},
                              out=("LATENT",)),
        "PreviewAny": node({"source": ("*", {})}),
        "VAEDecode": node({"samples": ("LATENT", {}), "vae": ("VAE", {})}, out=("IMAGE",)),
        "SaveImage": node({"images": ("IMAGE", {}), "filename_prefix": s}),
        "PoSAttentionMaps": node({"run": ("POS_RUN", {}), "relation_index": i, "step": i}, out=("IMAGE",)),
        "PoSScore": node({"images": ("IMAGE", {}), "relations": ("POS_RELATIONS", {}), "threshold": f},
                         {"detector": ("POS_DETECTOR", {}), "depth_model": ("POS_DEPTH", {})},
                         out=("FLOAT", "FLOAT", "STRING", "IMAGE")),
    }


def bases(info: dict) -> dict:
    out = {}
    for key, name in (("psg", "pos_psg_sd15"), ("seed_search", "pos_seed_search")):
        wf = demo.load_workflow(name)
        assert is_ui_format(wf)
        out[key] = ui_to_api(wf, info)
    return out


@pytest.mark.parametrize("way", list(demo.WAYS))
def test_graph_of_one_image(way):
    info = object_info()
    g = demo.way_graph(way, bases(info), info, "a cat above a dog", 7, "tb.safetensors",
                       ("pos-testbed-colors", "none"), demo.BUILTIN_OVERRIDES, f"pos_demo/{way}")
    types = [v["class_type"] for v in g.values()]
    assert types.count("PoSGuidance") == (way == "guidance")
    assert types.count("PoSSeedSearch") == (way == "seed_search")
    assert types.count("KSampler") == (way != "seed_search")
    assert "PoSAttentionMaps" not in types and types.count("SaveImage") == 1 and types.count("PoSScore") == 1
    rel = next(n for n, v in g.items() if v["class_type"] == "PoSRelationsFromPrompt")
    assert g[rel]["inputs"]["text"] == "a cat above a dog"
    ckpt = next(v for v in g.values() if v["class_type"] == "CheckpointLoaderSimple")
    assert ckpt["inputs"]["ckpt_name"] == "tb.safetensors"
    lat = next(v for v in g.values() if v["class_type"] == "EmptyLatentImage")
    assert (lat["inputs"]["width"], lat["inputs"]["height"]) == (128, 128)
    neg = next(v for v in g.values() if v["class_type"] == "CLIPTextEncode")
    assert neg["inputs"]["text"] == ""
    sampler = next(v for v in g.values() if v["class_type"] in ("KSampler", "PoSSeedSearch"))
    assert (sampler["inputs"]["seed"], sampler["inputs"]["steps"], sampler["inputs"]["cfg"]) == (7, 20, 5.0)
    # the sampler's model: straight from the loader except through PoS Guidance
    src = g[sampler["inputs"]["model"][0]]["class_type"]
    assert src == ("PoSGuidance" if way == "guidance" else "CheckpointLoaderSimple")
    if way == "guidance":  # PoS Guidance at the node's defaults
        gd = next(v for v in g.values() if v["class_type"] == "PoSGuidance")["inputs"]
        assert (gd["scale"], gd["guided_fraction"], gd["loss_scale"], gd["smoothing"]) == (20.0, 0.5, -1.0, True)
    if way == "seed_search":  # candidates, mode and search steps at the node's defaults
        assert (sampler["inputs"]["candidates"], sampler["inputs"]["mode"], sampler["inputs"]["search_steps"]) == \
            (8, "attention", 4)
        assert "vae" not in sampler["inputs"]  # attention mode: no candidate previews to decode
    # PoS Score scores the saved image with the prompt's relations and the colour detector; Preview Any shows it
    score = g[demo.SCORE]["inputs"]
    assert score["images"] == g[demo.SAVE]["inputs"]["images"] and score["relations"] == [rel, 1]
    assert g[demo.DETECTOR]["inputs"]["detector"] == "pos-testbed-colors"
    assert g[demo.REPORT]["inputs"]["source"] == [demo.SCORE, 2]
    assert g[demo.SAVE]["inputs"]["filename_prefix"] == f"pos_demo/{way}"
    # the graph converts to the front end's format (embedded in the PNG), every node and link kept
    ui = api_to_ui(g, info)
    assert len(ui["nodes"]) == len(g) and len(ui["links"]) == sum(
        isinstance(x, list) for v in g.values() for x in v["inputs"].values())
    # every link points at a node of the graph
    for v in g.values():
        for x in v["inputs"].values():
            if isinstance(x, list):
                assert x[0] in g


def test_graph_key_ignores_file_names_only():
    info = object_info()
    b = bases(info)
    args = ("a cat above a dog", 7, "tb.safetensors", ("pos-testbed-colors", "none"), demo.BUILTIN_OVERRIDES)
    k1 = demo.graph_key(demo.way_graph("guidance", b, info, *args, "a"))
    assert k1 == demo.graph_key(demo.way_graph("guidance", b, info, *args, "b"))
    assert k1 != demo.graph_key(demo.way_graph("unguided", b, info, *args, "a"))
    other = ("a cat above a dog", 8) + args[2:]
    assert k1 != demo.graph_key(demo.way_graph("guidance", b, info, *other, "a"))


def test_graph_key_of_a_seed_search_names_the_candidate_scheme(monkeypatch):
    """Seed-search images cached before the candidates changed are not reused; other ways' are."""
    info = object_info()
    b = bases(info)
    args = ("a cat above a dog", 7, "tb.safetensors", ("pos-testbed-colors", "none"), demo.BUILTIN_OVERRIDES)
    search, guided = (demo.way_graph(w, b, info, *args, "a") for w in ("seed_search", "guidance"))
    before = demo.graph_key(search), demo.graph_key(guided)
    monkeypatch.setattr(demo, "SEED_SCHEME", "another scheme")
    assert demo.graph_key(search) != before[0] and demo.graph_key(guided) == before[1]


def rel(visor=True, ms=False, mo=False, pse=0.9, relation="left"):
    return {"subject": "cat", "object": "dog", "relation": relation, "pse": pse, "missing_subject": ms,
            "missing_object": mo, "visor": visor, "geneval": visor, "t2i_compbench": pse}


def test_verdicts():
    assert demo.verdict([rel()]) == "right"
    assert demo.verdict([rel(visor=False)]) == "wrong"
    assert demo.verdict([rel(ms=True, visor=False, pse=0.0)]) == "missing"
    assert demo.verdict([rel(), rel(visor=False)]) == "wrong"


def test_wilson():
    lo, hi = demo.wilson(5, 10)
    assert lo < 0.5 < hi and abs((0.5 - lo) - (hi - 0.5)) < 1e-9
    assert demo.wilson(0, 10)[0] == 0.0 and demo.wilson(10, 10)[1] == 1.0
    assert abs(demo.wilson(8, 10)[0] - 0.4902) < 1e-3  # Wilson's 95 % interval of 8 / 10: [0.490, 0.943]


def records(tmp_path: Path) -> list[dict]:
    from PIL import Image

    out = []
    specs = {"unguided": [rel(visor=False, pse=0.2), rel(ms=True, visor=False, pse=0.0)],
             "guidance": [rel(pse=0.9), rel(visor=False, pse=0.4)],
             "seed_search": [rel(pse=0.8), rel(pse=0.7)]}
    for way, rs in specs.items():
        for k, r in enumerate(rs):
            name = f"images/{way}/p{k:02d}_s1000.png"
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (128, 128), (10 * k, 100, 200)).save(tmp_path / name)
            out.append({"way": way, "prompt": f"a cat to the left of a dog {k}", "seed": 1000, "image": name,
                        "pse": r["pse"], "relations": [r], "seconds": 1.0 + k})
    return out


def test_table_summary_chart_and_grid(tmp_path):
    from PIL import Image

    recs = records(tmp_path)
    h = demo.headline(recs)
    assert h["unguided"]["relation_accuracy"] == 0.0 and h["unguided"]["object_accuracy"] == 0.5
    assert h["guidance"]["relation_accuracy"] == 0.5 and abs(h["guidance"]["mean_pse"] - 0.65) < 1e-9
    assert h["seed_search"]["seconds_per_image"] == 1.5
    head = demo.write_summary(tmp_path, recs, "test")
    lines = head.splitlines()
    assert lines[2].startswith("| unguided | 2 | 0.0 [0.0, ") and "| 50.0 | 0.100 | 1.50 |" in lines[2]
    assert lines[3].startswith("| PoS Guidance | 2 | 50.0 [") and "| 100.0 | 0.650 | 1.50 |" in lines[3]
    md = (tmp_path / "summary.md").read_text()
    assert head in md and "| metric | unguided | guidance | seed_search |" in md and "PSE mean" in md
    assert Image.open(tmp_path / "chart.png").width > 0
    for way in demo.WAYS:
        assert json.loads((tmp_path / "summary" / way / "summary.json").read_text())["n"] == 2
    grid = Image.open(demo.write_grid(tmp_path, recs, tile=64))
    assert grid.size == (260 + 3 * 64, 28 + 2 * (64 + 22))
    # a tile's frame carries its verdict's colour: row 0 unguided wrong (red), guidance right (green)
    assert grid.getpixel((260 + 1, 28 + 1)) == (200, 40, 40)
    assert grid.getpixel((260 + 64 + 1, 28 + 1)) == (30, 150, 60)
    assert grid.getpixel((260 + 1, 28 + 86 + 1)) == (150, 150, 150)  # row 1 unguided: an object missing


def test_cli_reports_a_missing_comfyui(tmp_path):
    env = dict(os.environ, COMFYUI_PATH=str(tmp_path))
    r = subprocess.run([sys.executable, "-m", "pos_core", "demo", "--out", str(tmp_path / "o")], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "has no main.py" in r.stderr
    assert not (tmp_path / "o").exists()


def test_demo_script_shares_the_test_commands_venv():
    run = (ROOT / "tests" / "run.sh").read_text()
    script = (ROOT / "scripts" / "demo.sh").read_text()
    for text in (run, script):
        assert "source scripts/venv.sh" in text and "pos_venv\n" in text
    assert 'exec "$py" -m pos_core demo "$@"' in script
    r = subprocess.run(["bash", "-n", str(ROOT / "scripts" / "demo.sh")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_builtin_model_knows_its_classes_only():
    demo.check_builtin_prompts(demo.builtin_prompts())
    with pytest.raises(demo.DemoError, match=r"names \['horse'\].*use cat, dog"):
        demo.check_builtin_prompts(["a cat above a dog", "a horse to the left of a cat"])
