"""The nodes' help pages (web/docs/<node id>.md, shown by the front end's node docs panel) cannot drift
from the nodes.

Host-free: the node schemas import ComfyUI's comfy_api, so the schemas are read from the source with
Python's ast module: every `X.Input("name", ...)` and `X.Output(display_name="...")` inside a node's
`define_schema` (following calls to helper functions of the nodes package, such as `*dit_inputs()`).
A page must list exactly those inputs in its "## Inputs" table and those outputs in its "## Outputs"
table (first column, in backticks), and every picture it shows must exist and be small.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NODES = ROOT / "nodes"
WEB = ROOT / "web"
DOCS = WEB / "docs"


def _modules() -> dict[str, ast.Module]:
    return {p.stem: ast.parse(p.read_text(encoding="utf-8"), str(p))
            for p in [*NODES.glob("*.py"), *NODES.glob("families/*.py")]}


def _functions(mods: dict[str, ast.Module]) -> dict[str, ast.FunctionDef]:
    """Module-level functions of the nodes package by name (helpers that build lists of inputs)."""
    out: dict[str, ast.FunctionDef] = {}
    for mod in mods.values():
        for node in mod.body:
            if isinstance(node, ast.FunctionDef):
                out.setdefault(node.name, node)
    return out


def _kwarg(call: ast.Call, name: str):
    for k in call.keywords:
        if k.arg == name and isinstance(k.value, ast.Constant):
            return k.value.value
    return None


def _collect(fn: ast.AST, funcs: dict[str, ast.FunctionDef], seen: set[str]) -> tuple[list[str], list[str]]:
    inputs: list[str] = []
    outputs: list[str] = []
    for call in (n for n in ast.walk(fn) if isinstance(n, ast.Call)):
        f = call.func
        if isinstance(f, ast.Attribute) and f.attr == "Input" and call.args \
                and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str):
            inputs.append(call.args[0].value)
        elif isinstance(f, ast.Attribute) and f.attr == "Input" and _kwarg(call, "id"):
            inputs.append(_kwarg(call, "id"))
        elif isinstance(f, ast.Attribute) and f.attr == "Output":
            name = _kwarg(call, "display_name") or _kwarg(call, "id")
            assert name, f"an Output without display_name at line {call.lineno}"
            outputs.append(name)
        elif isinstance(f, ast.Name) and f.id in funcs and f.id not in seen:
            i, o = _collect(funcs[f.id], funcs, seen | {f.id})
            inputs += i
            outputs += o
    return inputs, outputs


def node_schemas() -> dict[str, dict]:
    """{node_id: {"display_name", "inputs", "outputs", "file"}} for every V3 node of the pack."""
    mods = _modules()
    funcs = _functions(mods)
    out = {}
    for stem, mod in mods.items():
        for cls in (n for n in mod.body if isinstance(n, ast.ClassDef)):
            schema = next((f for f in cls.body if isinstance(f, ast.FunctionDef) and f.name == "define_schema"), None)
            if schema is None:
                continue
            call = next((n for n in ast.walk(schema) if isinstance(n, ast.Call) and _kwarg(n, "node_id")), None)
            if call is None:
                continue
            inputs, outputs = _collect(schema, funcs, set())
            out[_kwarg(call, "node_id")] = {"display_name": _kwarg(call, "display_name"), "inputs": inputs,
                                            "outputs": outputs, "file": f"nodes/{stem}.py"}
    return out


def table_names(page: str, heading: str) -> list[str]:
    """First-column names (in backticks) of the table under `## heading` of a page."""
    m = re.search(rf"^## {heading}\s*\n(.*?)(?=^## |\Z)", page, flags=re.S | re.M)
    assert m, f"no '## {heading}' section"
    names = []
    for line in m.group(1).splitlines():
        if not line.startswith("|") or re.match(r"^\|\s*-", line):
            continue
        first = line.strip("|").split("|")[0]
        names += re.findall(r"`([^`]+)`", first)
    return names


SCHEMAS = node_schemas()


def test_the_parser_finds_all_thirteen_nodes_with_their_sockets():
    assert set(SCHEMAS) == {"PoSRelationsFromPrompt", "PoSRelation", "PoSGuidance", "PoSAttentionCapture",
                            "PoSAttentionMaps", "PoSDetectorLoader", "PoSDepthLoader", "PoSScore",
                            "PoSSeedSearch", "SR4GSpatialCaptions", "PoSTrainLoRA", "PoSLayoutFromRelations",
                            "PoSDistillLoRA"}
    assert {"blocks", "softmax"} <= set(SCHEMAS["PoSGuidance"]["inputs"])  # through *dit_inputs()
    assert SCHEMAS["PoSScore"]["outputs"] == ["pse", "mean_pse", "report", "overlay"]


def test_the_pack_serves_web_directory():
    init = (ROOT / "__init__.py").read_text(encoding="utf-8")
    assert re.search(r'^WEB_DIRECTORY\s*=\s*"\./web"', init, flags=re.M)
    assert "WEB_DIRECTORY" in re.search(r"__all__\s*=\s*\[(.*?)\]", init, flags=re.S).group(1)


@pytest.mark.parametrize("node_id", sorted(SCHEMAS))
def test_page_lists_exactly_the_node_inputs_and_outputs(node_id):
    path = DOCS / f"{node_id}.md"
    assert path.exists(), f"{node_id} has no help page {path.relative_to(ROOT)}"
    page = path.read_text(encoding="utf-8")
    schema = SCHEMAS[node_id]
    inputs, outputs = table_names(page, "Inputs"), table_names(page, "Outputs")
    missing = [i for i in schema["inputs"] if i not in inputs]
    extra = [i for i in inputs if i not in schema["inputs"]]
    assert not missing, f"{path.name}: inputs of {schema['file']} not in the page's Inputs table: {missing}"
    assert not extra, f"{path.name}: the Inputs table names inputs the node does not have: {extra}"
    missing = [o for o in schema["outputs"] if o not in outputs]
    extra = [o for o in outputs if o not in schema["outputs"]]
    assert not missing, f"{path.name}: outputs of {schema['file']} not in the page's Outputs table: {missing}"
    assert not extra, f"{path.name}: the Outputs table names outputs the node does not have: {extra}"


@pytest.mark.parametrize("node_id", sorted(SCHEMAS))
def test_page_has_the_sections_a_user_looks_for(node_id):
    page = (DOCS / f"{node_id}.md").read_text(encoding="utf-8")
    assert page.startswith(f"# {SCHEMAS[node_id]['display_name']}\n"), "a page starts with the node's title"
    for heading in ("Inputs", "Outputs", "Connect it", "Families", "Common mistakes"):
        assert re.search(rf"^## {heading}", page, flags=re.M), f"no '## {heading}' section"


def test_every_picture_exists_and_is_not_hand_drawn():
    for page in DOCS.glob("*.md"):
        for src in re.findall(r"!\[[^\]]*\]\(([^)\s]+)", page.read_text(encoding="utf-8")):
            assert not re.match(r"^(/|https?:)", src), f"{page.name}: {src} must be relative to docs/"
            assert (DOCS / src).exists(), f"{page.name} shows {src}, which is not in web/docs"
            assert src.startswith("img/"), src
    made_by = (ROOT / "scripts" / "make_doc_pictures.py").read_text(encoding="utf-8")
    for img in (DOCS / "img").glob("*"):
        assert img.name in made_by, f"{img.name} is not made by scripts/make_doc_pictures.py"


def test_docs_folders_are_small():
    total = sum(p.stat().st_size for d in (DOCS, ROOT / "docs") for p in d.rglob("*") if p.is_file())
    assert total < 3_000_000, f"web/docs + docs are {total / 1e6:.1f} MB; keep them under 3 MB"


def ordered_inputs(node_id: str) -> list[str]:
    """A node's input names in source order (the order widgets_values follow): the elements of its
    Schema's inputs=[...] list, expanding *helper() calls (ast.walk in node_schemas does not keep order)."""
    mods = _modules()
    funcs = _functions(mods)

    def names(elts) -> list[str]:
        out = []
        for e in elts:
            if isinstance(e, ast.Starred) and isinstance(e.value, ast.Call) and isinstance(e.value.func, ast.Name):
                ret = next(n for n in ast.walk(funcs[e.value.func.id]) if isinstance(n, ast.Return))
                out += names(ret.value.elts)
            elif isinstance(e, ast.Call) and e.args and isinstance(e.args[0], ast.Constant):
                out.append(e.args[0].value)
        return out

    for mod in mods.values():
        for call in (n for n in ast.walk(mod) if isinstance(n, ast.Call) and _kwarg(n, "node_id") == node_id):
            lst = next(k.value for k in call.keywords if k.arg == "inputs")
            return names(lst.elts)
    raise KeyError(node_id)


def test_new_guidance_inputs_come_last_so_saved_workflows_keep_their_widgets():
    """widgets_values are positional: a new input goes last, and every shipped workflow saved before it
    still maps its values onto the same inputs (objective and max_step then take their defaults)."""
    import json

    inputs = ordered_inputs("PoSGuidance")
    assert sorted(inputs) == sorted(SCHEMAS["PoSGuidance"]["inputs"])
    assert inputs[-4:] == ["blocks", "softmax", "objective", "max_step"]
    widgets_before = inputs[2:-2]  # model and relations are sockets; objective and max_step came later
    assert widgets_before == ["scale", "guided_fraction", "loss_scale", "smoothing", "attention_level", "blocks",
                              "softmax"]
    seen = 0
    for path in sorted((ROOT / "workflows").glob("*.json")):
        for node in json.loads(path.read_text(encoding="utf-8"))["nodes"]:
            if node["type"] == "PoSGuidance":
                seen += 1
                assert len(node.get("widgets_values") or []) <= len(widgets_before) + 2, path.name
    assert seen
