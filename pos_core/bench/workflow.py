"""Turn a config's API-format workflow into the graph of one unit: only what makes the image, the
prompt, seed, checkpoint and overrides injected, and one SaveImage node the runner reads back."""

from __future__ import annotations

import copy

SAVE_NODE = "pos_bench_save"
SAMPLERS = {"KSampler", "KSamplerAdvanced", "SamplerCustom", "SamplerCustomAdvanced", "CFGGuider",
            "BasicGuider", "DualCFGGuider"}
SEED_INPUTS = ("seed", "noise_seed")
GUIDANCE = "PoSGuidance"
# override key -> (node classes it applies to (None: any node with that input), input name)
SAMPLER_KEYS = {"steps", "cfg", "sampler_name", "scheduler", "denoise"}
LATENT_KEYS = {"width", "height", "batch_size"}
GUIDANCE_KEYS = {"scale": "scale", "fraction": "guided_fraction", "guided_fraction": "guided_fraction",
                 "loss_scale": "loss_scale", "smoothing": "smoothing", "level": "attention_level",
                 "attention_level": "attention_level"}
KNOWN = sorted(SAMPLER_KEYS | LATENT_KEYS | set(GUIDANCE_KEYS) | {"guided", "negative", "output"})


def _refs(api: dict, nid: str) -> list[tuple[str, str]]:
    return [(other, name) for other, node in api.items() for name, v in node["inputs"].items()
            if isinstance(v, list) and v[0] == nid]


def _ancestors(api: dict, nid: str) -> set[str]:
    seen, todo = set(), [nid]
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        if n not in api:
            raise ValueError(f"workflow links to node {n!r}, which it does not contain")
        seen.add(n)
        todo += [v[0] for v in api[n]["inputs"].values() if isinstance(v, list)]
    return seen


def _keep(api: dict, ids: set[str]) -> dict:
    """The nodes `ids` of the graph in a fixed order (the graph is embedded in the PNG: same unit, same bytes)."""
    return {n: api[n] for n in sorted(ids, key=lambda n: (len(n), n))}


def image_source(api: dict, output: str | None = None) -> list:
    """The [node, slot] whose IMAGE the bench saves: `output` (a node id) if given, else the one
    VAEDecode (or the images input of the one SaveImage)."""
    if output is not None:
        output = str(output)
        if output not in api:
            raise ValueError(f"overrides.output: node {output!r} is not in the workflow (ids: {sorted(api)})")
        node = api[output]
        if node["class_type"] in ("SaveImage", "PreviewImage"):
            return list(node["inputs"]["images"])
        return [output, 0]
    decodes = [n for n, v in api.items() if v["class_type"].startswith("VAEDecode")]
    if len(decodes) == 1:
        return [decodes[0], 0]
    saves = [n for n, v in api.items() if v["class_type"] == "SaveImage"]
    if len(saves) == 1:
        return list(api[saves[0]]["inputs"]["images"])
    raise ValueError(f"workflow has {len(decodes)} VAE Decode nodes ({', '.join(decodes) or 'none'}): "
                     "name the one to save with overrides.output: NODE_ID")


def _drop_guidance(api: dict) -> None:
    """Unguided: every PoS Guidance node removed, its MODEL consumers wired to its model input."""
    for gid in [n for n, v in api.items() if v["class_type"] == GUIDANCE]:
        src = api[gid]["inputs"]["model"]
        for other, name in _refs(api, gid):
            if api[other]["inputs"][name][1] == 0:
                api[other]["inputs"][name] = list(src)
        del api[gid]


def _text_nodes(api: dict, socket: str) -> list[str]:
    """Nodes whose `text` feeds the samplers' `socket` input (positive / negative)."""
    out = []
    for node in api.values():
        if node["class_type"] in SAMPLERS and isinstance(node["inputs"].get(socket), list):
            src = node["inputs"][socket][0]
            if "text" in api[src]["inputs"] and not isinstance(api[src]["inputs"]["text"], list):
                out.append(src)
    return out


def prepare(api: dict, prompt: str, seed: int, checkpoint: str | None = None, overrides: dict | None = None,
            prefix: str = "pos_bench/img") -> dict:
    """The graph of one unit from a config's API-format workflow (not modified)."""
    overrides = dict(overrides or {})
    unknown = [k for k in overrides if k not in KNOWN and "." not in k]
    if unknown:
        raise ValueError(f"unknown override(s) {unknown}: use {', '.join(KNOWN)} or NODE_ID.input / "
                         "ClassType.input")
    api = copy.deepcopy(api)
    src = image_source(api, overrides.pop("output", None))
    api = _keep(api, _ancestors(api, src[0]))
    api[SAVE_NODE] = {"class_type": "SaveImage", "inputs": {"images": src, "filename_prefix": prefix}}
    guided = overrides.pop("guided", None)
    has_guidance = any(v["class_type"] == GUIDANCE for v in api.values())
    if guided is True and not has_guidance:
        raise ValueError("guided: true, but the workflow has no PoS Guidance node before the saved image")
    if guided is False:
        _drop_guidance(api)
        api = _keep(api, _ancestors(api, SAVE_NODE))

    def put(classes, name: str, value, what: str) -> None:
        hit = [n for n, v in api.items() if (classes is None or v["class_type"] in classes)
               and name in v["inputs"] and not isinstance(v["inputs"][name], list)]
        if not hit:
            raise ValueError(f"{what}: no node of the workflow takes {name!r}")
        for n in hit:
            api[n]["inputs"][name] = value

    # the prompt: PoS Relations from Prompt and whatever encodes the samplers' positive input
    targets = {n for n, v in api.items() if v["class_type"] == "PoSRelationsFromPrompt"}
    targets |= set(_text_nodes(api, "positive"))
    if not targets:
        raise ValueError("workflow has no prompt to set: no PoS Relations from Prompt and no text encoder on a "
                         "sampler's positive input")
    for n in targets:
        api[n]["inputs"]["text"] = prompt
    seeds = [(n, k) for n, v in api.items() for k in SEED_INPUTS
             if k in v["inputs"] and not isinstance(v["inputs"][k], list)]
    if not seeds:
        raise ValueError("workflow has no seed input (KSampler seed, noise_seed) to set")
    for n, k in seeds:
        api[n]["inputs"][k] = seed
    if checkpoint is not None:
        put(None, "ckpt_name", checkpoint, "checkpoint")
    for key, value in overrides.items():
        if key in SAMPLER_KEYS:
            put(SAMPLERS | {"BasicScheduler", "KSamplerSelect"}, key, value, f"overrides.{key}")
        elif key in LATENT_KEYS:
            put(None, key, value, f"overrides.{key}")
        elif key in GUIDANCE_KEYS:
            if guided is not False:
                put({GUIDANCE}, GUIDANCE_KEYS[key], value, f"overrides.{key}")
        elif key == "negative":
            negs = _text_nodes(api, "negative")
            if not negs:
                raise ValueError("overrides.negative: no text encoder on a sampler's negative input")
            for n in negs:
                api[n]["inputs"]["text"] = value
        else:
            target, _, name = key.partition(".")
            if target in api:
                api[target]["inputs"][name] = value
            else:
                put({target}, name, value, f"overrides.{key}")
    return api
