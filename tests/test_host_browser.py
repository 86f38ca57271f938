"""Real-browser test: Debian's headless Chromium, driven by Playwright, against the real ComfyUI server
and its real front end (comfyui-frontend-package). Screenshots go to $POS_ARTIFACTS (default
tests/artifacts, not committed); with POS_UPDATE_PREVIEWS=1 they also become the workflow previews and
the help-page previews (docs/help_*.jpg). The minimap is closed before any screenshot."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest

import comfy_host
import dit_files
from test_host_sr4g import BROWSER_SHRINK_JS, install_coco
from test_host_workflows import DIT, NOT_RUN, WORKFLOWS
from workflow_format import WORKFLOWS_DIR

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("POS_ARTIFACTS", ROOT / "tests" / "artifacts"))
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]

SHRINK = """([fixture, keep]) => {
  for (const n of app.graph._nodes) for (const w of (n.widgets || [])) {
    if (w.name === 'ckpt_name' && !keep.includes(w.value)) w.value = fixture;
    if (w.name === 'detector') w.value = 'tiny-owl';
    if (w.name === 'sam') w.value = 'tiny-sam';
    if (w.name === 'width' || w.name === 'height') w.value = 256;
    if (w.name === 'steps') w.value = 4;
    if (w.name === 'search_steps') w.value = 2;
    if (w.name === 'candidates') w.value = 3;
    if (n.type === 'PoSDistillLoRA') {  // two prompts, one trajectory each, 64 px, two training steps
      if (w.name === 'prompts') w.value = w.value.split(String.fromCharCode(10)).slice(0, 2).join(String.fromCharCode(10));
      if (w.name === 'width' || w.name === 'height') w.value = 64;
      if (w.name === 'steps') w.value = 2;
      if (w.name === 'trajectories') w.value = 1;
      if (w.name === 'train_steps') w.value = 2;
      if (w.name === 'batch_size') w.value = 2;
    }
    __SR4G__
  }
  app.graph.setDirtyCanvas(true, true);
}""".replace("__SR4G__", BROWSER_SHRINK_JS)


@pytest.fixture(scope="module")
def chromium():
    """One Playwright and one headless Chromium for the module (a second sync_playwright() in the same
    thread while the first is open fails: 'using Playwright Sync API inside the asyncio loop')."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (no browser download)")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def browser_page(comfyui_path, tiny_models, tmp_path_factory, chromium):
    import numpy as np
    from PIL import Image

    base = tmp_path_factory.mktemp("comfy_browser")
    dit_files.install(base / "models")  # the Flux / SD3.5 workflows' files, random, under official names
    models = {"tiny-owl": tiny_models["owlv2"], "tiny-sam": tiny_models["sam"]}
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with comfy_host.server(comfyui_path, base, pos_models=models) as srv:
        Image.fromarray(np.random.RandomState(0).randint(0, 255, (96, 96, 3), dtype=np.uint8)).save(
            base / "input" / "example.png")
        install_coco(base)
        page = chromium.new_page(viewport={"width": 1700, "height": 1000})
        page.goto(srv.url)
        page.wait_for_function("window.app && window.app.graph && window.LiteGraph", timeout=120_000)
        page.wait_for_timeout(3000)
        close_minimap(page)
        yield srv, page
        page.close()


# what the front ends (1.27 dialog, 1.49 errors panel) say of node types they do not know
MISSING_NODE = r"missing node|nodes? (are|is) missing|node types? (were )?not found"


def open_missing_models(page) -> None:
    """Front end 1.49+ says a model file is missing in a toast; its "View details" opens the errors panel
    that lists them (1.27 opens its Missing Models dialog at once)."""
    try:  # under load the front end takes a while to check the model files
        page.wait_for_function("() => /Missing Models|View details/.test(document.body.innerText)", timeout=60_000)
    except Exception:  # noqa: BLE001 - the caller's assertion says what is missing
        return
    if page.get_by_text("Missing Models").count() == 0 and page.get_by_text("View details").count():
        page.get_by_text("View details").first.click()
        page.wait_for_timeout(1000)


def close_missing_models(page) -> None:
    page.keyboard.press("Escape")  # 1.27's dialog
    page.wait_for_timeout(500)
    toggle = page.get_by_label("Toggle properties panel")  # 1.49's errors panel
    if page.get_by_text("Missing Models").count() and toggle.count():
        toggle.first.click()
        page.wait_for_timeout(500)


def close_minimap(page) -> None:
    """The front end opens its minimap over the bottom-right of the canvas: close it (a user setting)."""
    page.evaluate("async () => { await app.extensionManager.setting.set('Comfy.Minimap.Visible', false); }")
    page.wait_for_timeout(500)


def test_workflows_are_in_the_template_browser(browser_page):
    srv, page = browser_page
    templates = srv.get("/api/workflow_templates")
    # every workflows/*.json is listed (on 0.3.x also the Flux.2 and Z-Image ones, which need ComfyUI 0.33)
    assert sorted(templates.get("pos-spatial", [])) == sorted(p.stem for p in WORKFLOWS_DIR.glob("*.json"))
    dialog = page.get_by_text("Custom Nodes")
    if dialog.count():  # the template browser opens on a first visit: show the pack's entry
        dialog.first.click()
        page.wait_for_timeout(1000)
        page.screenshot(path=str(ARTIFACTS / "template_browser.png"))
    page.keyboard.press("Escape")
    page.wait_for_timeout(500)


def test_pack_nodes_are_found_by_node_search(browser_page):
    _, page = browser_page
    for _ in range(2):  # the template browser opens on a first visit (when this test runs alone)
        page.keyboard.press("Escape")
        page.wait_for_timeout(500)
    page.evaluate("app.graph.clear()")
    page.mouse.dblclick(800, 500)
    page.wait_for_timeout(800)
    page.keyboard.type("PoS Guidance", delay=30)
    page.wait_for_timeout(1500)
    page.screenshot(path=str(ARTIFACTS / "node_search.png"))
    if os.environ.get("POS_UPDATE_PREVIEWS"):
        update_picture(ARTIFACTS / "node_search.png", ROOT / "docs" / "node_search.jpg", (1020, 600))
    assert page.get_by_text("PoS Guidance (PSG)").count() > 0, "the node search lists PoS Guidance (PSG)"
    page.keyboard.press("Escape")
    registered = page.evaluate("Object.keys(LiteGraph.registered_node_types)")
    for name in ("PoSRelationsFromPrompt", "PoSGuidance", "PoSScore", "PoSSeedSearch", "PoSAttentionMaps"):
        assert name in registered


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_workflow_loads_without_missing_nodes_and_runs(browser_page, path):
    srv, page = browser_page
    page.keyboard.press("Escape")  # the template browser opens on a first visit (when run on its own)
    page.wait_for_timeout(500)
    workflow = json.loads(path.read_text())
    before = set(srv.get("/history"))
    page.evaluate("async (wf) => { await app.loadGraphData(wf); }", workflow)
    page.wait_for_timeout(1500)
    missing = page.evaluate("app.graph._nodes.filter(n => !LiteGraph.registered_node_types[n.type]).map(n => n.type)")
    assert missing == []
    # model files this server lacks: the missing-model dialog lists each with the download its
    # properties.models entry offers; close it before looking for any other warning
    linked = [m for n in workflow["nodes"] for m in n.get("properties", {}).get("models", [])
              if not (srv.base / "models" / m["directory"] / m["name"]).exists()]
    if linked:
        open_missing_models(page)
        assert page.get_by_text("Missing Models").count() > 0, "the missing-model dialog opens"
        for m in linked:
            listed = page.get_by_text(f"{m['directory']} / {m['name']}").count() or (  # front end 1.27
                page.get_by_text(m["name"]).count() and page.get_by_text(m["directory"], exact=True).count())  # 1.49
            assert listed, m
        close_missing_models(page)
    text = page.evaluate("document.body.innerText")
    assert not re.search(MISSING_NODE, text, re.IGNORECASE), "no missing-node warning: " + text[:1500]
    assert page.evaluate("app.graph._nodes.length") == len(workflow["nodes"])
    if path.stem in NOT_RUN:  # its preview: the loaded graph (the model files it would need are not here)
        page.evaluate("app.canvas.ds.scale = 0.62; app.canvas.ds.offset = [30, 60]; app.graph.setDirtyCanvas(true, true)")
        page.wait_for_timeout(800)
        shot = ARTIFACTS / f"{path.stem}.png"
        page.screenshot(path=str(shot))
        if os.environ.get("POS_UPDATE_PREVIEWS") and path.parent.name == "workflows":
            update_picture(shot, path.with_suffix(".jpg"))
        pytest.skip(f"{path.stem} loaded (no missing node, its model links listed), not run: {NOT_RUN[path.stem]}")
    page.evaluate(SHRINK, [comfy_host.FIXTURE, list(dit_files.FILES)])
    page.evaluate("app.canvas.ds.scale = 0.62; app.canvas.ds.offset = [30, 60]; app.graph.setDirtyCanvas(true, true)")
    page.wait_for_timeout(500)
    page.evaluate("async () => { await app.queuePrompt(0, 1); }")
    end = time.time() + 600
    new = set()
    while time.time() < end and not new:
        new = set(srv.get("/history")) - before
        time.sleep(0.5)
    assert new, "queueing from the browser started a run"
    entry = srv.wait(new.pop(), timeout=600)
    if path.stem in DIT:  # let go of the 4.7 B-parameter T5 before the next workflow loads its own
        srv.post("/free", {"unload_models": True, "free_memory": True})
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"]["messages"])[:3000]
    page.wait_for_timeout(2500)
    shot = ARTIFACTS / f"{path.stem}.png"
    page.screenshot(path=str(shot))
    if os.environ.get("POS_UPDATE_PREVIEWS") and path.parent.name == "workflows":  # not the comfyui-0.3/ variants
        update_picture(shot, path.with_suffix(".jpg"))
        if path.stem == "pos_psg_sd15":
            update_picture(shot, ROOT / "docs" / "psg_workflow.jpg", (1275, 750))


def update_picture(src: Path, dst: Path, size=(850, 500)) -> None:
    """A screenshot as a committed picture (workflow preview or README figure)."""
    from PIL import Image

    dst.parent.mkdir(exist_ok=True)
    Image.open(src).convert("RGB").resize(size).save(dst, quality=85)


# ------------------------------------------------------------------------ node help pages (docs panel)

# every help page (test_node_docs.py: one per node, named by its id)
HELP_NODES = sorted(p.stem for p in (ROOT / "web" / "docs").glob("*.md"))
HELP_PREVIEWS = {"PoSGuidance": "help_guidance.jpg", "PoSScore": "help_score.jpg"}


@pytest.fixture(scope="module")
def docs_page(comfyui_path, tmp_path_factory, chromium):
    """A plain server with the pack (no model files: the docs panel needs none) and a page that records
    every failed request."""
    base = tmp_path_factory.mktemp("comfy_docs")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with comfy_host.server(comfyui_path, base) as srv:
        page = chromium.new_page(viewport={"width": 1600, "height": 1000})
        failed: list[tuple[int, str]] = []
        page.on("response", lambda r: failed.append((r.status, r.url)) if r.status >= 400 else None)
        page.goto(srv.url)
        page.wait_for_function("window.app && window.app.graph && window.LiteGraph", timeout=120_000)
        page.wait_for_timeout(3000)
        page.keyboard.press("Escape")  # the template browser of a first visit
        close_minimap(page)
        yield srv, page, failed
        page.close()


def test_web_directory_serves_the_help_pages(docs_page):
    srv, _, _ = docs_page
    import urllib.request

    for node in HELP_NODES:
        with urllib.request.urlopen(f"{srv.url}/extensions/pos-spatial/docs/{node}.md", timeout=30) as r:
            assert r.status == 200 and r.read().decode().startswith("# ")


@pytest.mark.parametrize("node_id", HELP_NODES)
def test_docs_panel_shows_the_pack_page_with_its_pictures(docs_page, node_id):
    """Select the node, press the selection toolbox's info button: the node library's help panel shows the
    pack's page (its Markdown headings, not the generic description) and every picture in it loads."""
    srv, page, failed = docs_page
    failed.clear()
    page.evaluate("""(type) => {
      app.graph.clear();
      const n = LiteGraph.createNode(type);
      n.pos = [600, 450];
      app.graph.add(n);
      app.canvas.ds.scale = 1; app.canvas.ds.offset = [0, 0];
      app.canvas.deselectAll && app.canvas.deselectAll();
      app.canvas.selectNode(n);
      app.graph.setDirtyCanvas(true, true);
    }""", node_id)
    page.wait_for_timeout(800)
    page.locator('[data-testid="info-button"]').first.dispatch_event("click")
    help_ = page.locator(".node-help-content")
    help_.wait_for(timeout=30_000)
    page.wait_for_function("() => { const h = document.querySelector('.node-help-content');"
                           " return h && h.querySelector('h2'); }", timeout=30_000)
    headings = help_.locator("h2").all_inner_texts()
    assert "Inputs" in headings and "Common mistakes" in headings, (node_id, headings)
    assert page.locator(".fallback-content").count() == 0, "the generic description is shown, not the page"
    page.wait_for_function("() => [...document.querySelectorAll('.node-help-content img')].every(i => i.complete)",
                           timeout=30_000)
    images = page.evaluate("[...document.querySelectorAll('.node-help-content img')]"
                           ".map(i => [i.getAttribute('src'), i.naturalWidth])")
    page_md = (ROOT / "web" / "docs" / f"{node_id}.md").read_text(encoding="utf-8")
    assert len(images) == page_md.count("!["), images
    for src, width in images:
        assert src.startswith("/extensions/pos-spatial/docs/img/") and width > 0, (src, width)
    # the only failed request allowed is the front end's locale probe (docs/<id>/en.md), which the
    # pack answers with its one page docs/<id>.md
    bad = [(s, u) for s, u in failed if "/extensions/pos-spatial/" in u and not u.endswith(f"/docs/{node_id}/en.md")]
    assert not bad, bad
    # ComfyUI 0.3.64 writes no access log, so the 404s are read from the browser's responses above; its
    # log must not name a docs file either (a failed static route logs there)
    log = srv.log.read_text(errors="replace")
    assert "pos-spatial/docs" not in log, log[-2000:]
    if node_id in HELP_PREVIEWS:
        shot = ARTIFACTS / f"help_{node_id}.png"
        page.screenshot(path=str(shot))
        if os.environ.get("POS_UPDATE_PREVIEWS"):
            update_picture(shot, ROOT / "docs" / HELP_PREVIEWS[node_id], (1120, 700))
    page.locator('[data-testid="info-button"]').first.dispatch_event("click")  # toggles the panel closed
    page.wait_for_timeout(500)
