"""The pack's shape: pos_core stays free of ComfyUI, the CLI contract holds."""

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_pos_core_never_imports_comfy():
    for path in (ROOT / "pos_core").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                assert top not in {"comfy", "comfy_api", "comfy_extras", "folder_paths", "nodes"}, (path, name)
    code = "import sys, pos_core.pse, pos_core.guidance, pos_core.tokens, pos_core.relations; " \
           "print([m for m in sys.modules if m.split('.')[0].startswith('comfy')])"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def run_cli(*args, input=None):
    return subprocess.run([sys.executable, "-m", "pos_core", *args], cwd=ROOT, capture_output=True,
                          text=True, input=input)


def test_cli_parse_one_prompt_contract():
    out = run_cli("parse", "A teddy bear to the left of a (red car:1.2)")
    assert out.returncode == 0, out.stderr
    obj = json.loads(out.stdout)
    assert set(obj) == {"prompt", "relations"}
    (rel,) = obj["relations"]
    assert set(rel) == {"subject", "relation", "object", "subject_span", "object_span"}
    assert rel["subject"] == "teddy bear" and rel["relation"] == "left" and rel["object"] == "red car"
    p = obj["prompt"]
    assert p[slice(*rel["subject_span"])] == "teddy bear" and p[slice(*rel["object_span"])] == "red car"


def test_cli_no_relation_is_empty_and_exit_zero():
    out = run_cli("parse", "a beautiful sunset over the sea")
    assert out.returncode == 0
    # "over the sea": sunset above sea is a genuine reading; a prompt with none:
    out = run_cli("parse", "a bowl of fruit, oil painting")
    assert out.returncode == 0 and json.loads(out.stdout)["relations"] == []


def test_cli_parse_file(tmp_path):
    f = tmp_path / "prompts.txt"
    f.write_text("a cat above a dog\nno relation here\na vase in front of a clock\n", encoding="utf-8")
    out = run_cli("parse", "--file", str(f))
    assert out.returncode == 0, out.stderr
    lines = [json.loads(x) for x in out.stdout.splitlines()]
    assert [len(x["relations"]) for x in lines] == [1, 0, 1]
    assert lines[2]["relations"][0]["relation"] == "front"


def test_cli_bad_input_says_what_to_do(tmp_path):
    out = run_cli("parse", "--file", str(tmp_path / "missing.txt"))
    assert out.returncode == 2 and "--file" in out.stderr
    out = run_cli("parse")
    assert out.returncode == 2 and "PROMPT" in out.stderr


def test_cli_parse_needs_no_torch():
    code = ("import sys, runpy; sys.modules['torch'] = None; sys.argv = ['pos_core', 'parse', 'a cat left of a dog']; "
            "runpy.run_module('pos_core', run_name='__main__')")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["relations"][0]["relation"] == "left"
