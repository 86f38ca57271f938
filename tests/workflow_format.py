"""ComfyUI workflow formats: the UI format (nodes, links, widgets_values) users drag in, and the API
format /prompt runs, converted both ways with the real server's /object_info (widget order)."""

from __future__ import annotations

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}


def _inputs(info: dict) -> list[tuple[str, object, dict]]:
    out = []
    for section in ("required", "optional"):
        for name, spec in info["input"].get(section, {}).items():
            typ = spec[0]
            opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            out.append((name, typ, opts))
    return out


def is_widget(typ) -> bool:
    return isinstance(typ, list) or typ in WIDGET_TYPES


def ui_to_api(workflow: dict, object_info: dict) -> dict:
    """API-format prompt of a UI-format workflow (muted and bypassed nodes left out)."""
    links = {l[0]: l for l in workflow["links"]}
    prompt = {}
    for node in workflow["nodes"]:
        if node.get("mode", 0) in (2, 4) or node["type"] not in object_info:
            if node["type"] not in object_info:
                raise KeyError(f"node type {node['type']!r} is not installed (missing node)")
            continue
        info = object_info[node["type"]]
        by_name = {i["name"]: i for i in node.get("inputs", [])}
        values = list(node.get("widgets_values") or [])
        inputs = {}
        for name, typ, opts in _inputs(info):
            slot = by_name.get(name)
            if is_widget(typ):
                value = values.pop(0) if values else opts.get("default")
                if opts.get("control_after_generate") and values and values[0] in (
                        "fixed", "increment", "decrement", "randomize"):
                    values.pop(0)
                inputs[name] = value
            if slot is not None and slot.get("link") is not None:
                src = links[slot["link"]]
                inputs[name] = [str(src[1]), src[2]]
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt


def api_to_ui(prompt: dict, object_info: dict, titles: dict | None = None) -> dict:
    """UI-format workflow of an API prompt, laid out left to right by dependency depth."""
    depth: dict[str, int] = {}

    def d(nid: str) -> int:
        if nid not in depth:
            srcs = [v[0] for v in prompt[nid]["inputs"].values() if isinstance(v, list)]
            depth[nid] = 1 + max((d(s) for s in srcs), default=-1)
        return depth[nid]

    for nid in prompt:
        d(nid)
    nodes, links, column_y = [], [], {}
    outputs_links: dict[tuple[str, int], list[int]] = {}
    for nid, node in prompt.items():
        for name, v in node["inputs"].items():
            if isinstance(v, list):
                link_id = len(links) + 1
                typ = object_info[prompt[v[0]]["class_type"]]["output"][v[1]]
                links.append([link_id, int(v[0]), v[1], int(nid), None, typ, name])
                outputs_links.setdefault((v[0], v[1]), []).append(link_id)
    for order, nid in enumerate(sorted(prompt, key=lambda n: (depth[n], int(n)))):
        node = prompt[nid]
        info = object_info[node["class_type"]]
        ins, widgets = [], []
        for name, typ, opts in _inputs(info):
            given = node["inputs"].get(name)
            linked = isinstance(given, list)
            if is_widget(typ):
                value = opts.get("default") if given is None or linked else given
                if value is None and isinstance(typ, list):
                    value = typ[0]
                widgets.append(value)
                if opts.get("control_after_generate"):
                    widgets.append("fixed")
                if linked:
                    ins.append({"name": name, "type": "COMBO" if isinstance(typ, list) else typ,
                                "widget": {"name": name}, "link": None})
            else:
                ins.append({"name": name, "type": typ, "link": None})
            if linked:
                for link in links:
                    if link[3] == int(nid) and link[6] == name:
                        link[4] = len(ins) - 1
                        ins[-1]["link"] = link[0]
        outs = [{"name": oname, "type": otype, "slot_index": i,
                 "links": outputs_links.get((nid, i), [])}
                for i, (oname, otype) in enumerate(zip(info["output_name"], info["output"]))]
        x = 40 + depth[nid] * 380
        y = column_y.get(depth[nid], 40)
        height = 50 + 26 * (len(ins) + len(widgets)) + (260 if info.get("output_node") else 0)
        column_y[depth[nid]] = y + height + 40
        entry = {"id": int(nid), "type": node["class_type"], "pos": [x, y], "size": [340, height], "flags": {},
                 "order": order, "mode": 0, "inputs": ins, "outputs": outs,
                 "properties": {"Node name for S&R": node["class_type"]}, "widgets_values": widgets}
        if titles and nid in titles:
            entry["title"] = titles[nid]
        nodes.append(entry)
    return {"last_node_id": max(int(n) for n in prompt), "last_link_id": len(links), "nodes": nodes,
            "links": [l[:6] for l in links], "groups": [], "config": {}, "extra": {}, "version": 0.4}
