"""Detector, SAM and depth loading and the evaluation path, on tiny random-weight transformers models.

Random weights make random boxes: these tests prove the real loading and inference code and the
plumbing (shapes, unions, flags, errors), not detection quality.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pos_core import detect, evaluate
from pos_core.pse import pse, pse_depth

ROOT = Path(__file__).resolve().parents[1]


def test_detector_with_and_without_sam(tiny_models):
    det = detect.load_detector(tiny_models["owlv2"], sam=tiny_models["sam"])
    assert det.kind == "owlv2" and det.box_threshold == 0.1
    img = torch.rand(96, 128, 3)
    om = det.find(img, "cat", threshold=0.0)
    assert om.found and om.mask.shape == (96, 128) and om.mask.dtype == torch.bool
    for x0, y0, x1, y1 in om.boxes:
        assert 0 <= x0 < x1 <= 128 and 0 <= y0 < y1 <= 96
    none = det.find(img, "cat", threshold=1.01)
    assert not none.found and not none.mask.any()
    plain = detect.load_detector(tiny_models["owlv2"])
    boxes = [(0, 0, 10, 5), (50, 40, 60, 90)]
    union = plain.masks_from_boxes(img, boxes)
    assert int(union.sum()) == 10 * 5 + 10 * 50  # filled boxes, unioned
    sam_union = det.masks_from_boxes(img, boxes)
    assert sam_union.shape == (96, 128)


def test_grounding_dino_with_sam(tiny_models):
    det = detect.load_detector(tiny_models["gdino"], sam=tiny_models["sam"])
    assert det.kind == "grounding-dino" and (det.box_threshold, det.text_threshold) == (0.35, 0.25)
    img = torch.rand(80, 100, 3)
    om = det.find(img, "cat", threshold=0.0)
    assert om.found and om.mask.shape == (80, 100)
    assert len(om.scores) == len(om.boxes) and all(0.0 <= s <= 1.0 for s in om.scores)


def test_depth_model(tiny_models):
    dep = detect.load_depth(tiny_models["depth"])
    d = dep.predict(np.random.RandomState(0).randint(0, 255, (70, 90, 3), dtype=np.uint8))
    assert d.shape == (70, 90) and torch.isfinite(d).all() and (d >= 0).all()


def test_models_are_found_in_folders(tiny_models, tmp_path):
    link = tmp_path / "IDEA-Research--tiny-owl"
    link.symlink_to(tiny_models["owlv2"], target_is_directory=True)
    assert detect.resolve("IDEA-Research/tiny-owl", [str(tmp_path)]) == (str(link), True)
    assert detect.load_detector("IDEA-Research/tiny-owl", [str(tmp_path)]).kind == "owlv2"


def test_offline_without_a_local_copy_names_the_folder(tmp_path):
    with pytest.raises(ValueError, match=f"it is not in {tmp_path}.*huggingface-cli download"):
        detect.load_detector("IDEA-Research/grounding-dino-base", [str(tmp_path)])


def test_wrong_kind_of_model(tiny_models):
    with pytest.raises(ValueError, match="must be OWLv2, OWL-ViT or Grounding DINO"):
        detect.load_detector(tiny_models["depth"])
    with pytest.raises(ValueError, match="not a depth estimator"):
        detect.load_depth(tiny_models["owlv2"])


def scene(tmp_path: Path) -> Path:
    """Synthetic scenes with known masks: a cat left of a dog, a cup above a plate, a vase in front."""
    d = tmp_path / "imgs"
    d.mkdir()
    recs = []
    for i, (prompt, a_box, b_box) in enumerate([
            ("a cat to the left of a dog", (5, 20, 25, 40), (40, 20, 60, 40)),
            ("a cat to the left of a dog", (40, 10, 60, 30), (5, 20, 25, 40)),
            ("a cup above a plate", (20, 2, 40, 12), (10, 30, 50, 45))]):
        Image.fromarray(np.full((48, 64, 3), 128, np.uint8)).save(d / f"{i}.png")
        names = prompt.split()[1], prompt.split()[-1]
        for name, (x0, y0, x1, y1) in zip(names, (a_box, b_box)):
            m = np.zeros((48, 64), np.uint8)
            m[y0:y1, x0:x1] = 255
            Image.fromarray(m).save(d / f"{i}_{name}.png")
        recs.append({"image": f"{i}.png", "prompt": prompt,
                     "objects": {names[0]: f"{i}_{names[0]}.png", names[1]: [list(b_box)]}})
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return d


def test_evaluate_cli_on_known_masks(tmp_path):
    imgs = scene(tmp_path)
    out = subprocess.run([sys.executable, "-m", "pos_core", "evaluate", "--images", str(imgs), "--prompts",
                          str(tmp_path / "prompts.jsonl"), "--out", str(tmp_path / "out")],
                         cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    rows = [json.loads(x) for x in (tmp_path / "out" / "per_image.jsonl").read_text().splitlines()]
    assert [round(r["pse"], 6) for r in rows] == [1.0, 0.0, 1.0]
    r1 = rows[1]["relations"][0]
    assert r1["visor"] is False and r1["missing_subject"] is False
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["mean_pse"] == pytest.approx(2 / 3) and summary["accuracy"] == pytest.approx(2 / 3)
    assert summary["object_accuracy"] == 1.0 and summary["visor"]["VISOR_cond"] == pytest.approx(200 / 3)
    assert (tmp_path / "out" / "chart.png").stat().st_size > 1000
    assert "PSE mean" in out.stdout


def test_evaluate_with_detector_and_text_prompts(tmp_path, tiny_models):
    d = tmp_path / "imgs"
    d.mkdir()
    (tmp_path / "p.txt").write_text("a cat to the left of a dog\na vase in front of a clock\n")
    for name in ("0_0.png", "0_1.png", "1_0.png"):
        Image.fromarray(np.random.RandomState(1).randint(0, 255, (40, 40, 3), dtype=np.uint8)).save(d / name)
    out = subprocess.run([sys.executable, "-m", "pos_core", "evaluate", "--images", str(d), "--prompts",
                          str(tmp_path / "p.txt"), "--detector", tiny_models["owlv2"], "--depth",
                          tiny_models["depth"], "--out", str(tmp_path / "o"), "--threshold", "0.0"],
                         cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    rows = [json.loads(x) for x in (tmp_path / "o" / "per_image.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and rows[2]["relations"][0]["relation"] == "front"
    assert all(0.0 <= r["pse"] <= 1.0 for r in rows)


def test_evaluate_bad_input(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(d / "x.png")
    (tmp_path / "p.txt").write_text("a cat to the left of a dog\n")
    out = subprocess.run([sys.executable, "-m", "pos_core", "evaluate", "--images", str(d), "--prompts",
                          str(tmp_path / "p.txt")], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 2 and "does not start with the index" in out.stderr
    (d / "x.png").rename(d / "0_0.png")
    out = subprocess.run([sys.executable, "-m", "pos_core", "evaluate", "--images", str(d), "--prompts",
                          str(tmp_path / "p.txt")], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 2 and "pass --detector" in out.stderr


def test_score_relation_matches_pse_and_handles_missing():
    a = torch.zeros(20, 20, dtype=torch.bool)
    b = torch.zeros(20, 20, dtype=torch.bool)
    a[2:8, 1:6], b[3:9, 10:18] = True, True
    r = evaluate.score_relation(evaluate.from_mask(a), "left", evaluate.from_mask(b))
    assert r["pse"] == pytest.approx(pse(a, b, "left")) and r["visor"] and r["geneval"]
    empty = evaluate.score_relation(evaluate.from_mask(torch.zeros(20, 20)), "left", evaluate.from_mask(b))
    assert empty["pse"] == 0.0 and empty["missing_subject"] and not empty["visor"]
    depth = torch.linspace(1, 2, 20).repeat(20, 1)
    r = evaluate.score_relation(evaluate.from_mask(b), "front", evaluate.from_mask(a), depth)
    assert r["pse"] == pytest.approx(pse_depth(b, a, depth, "front")) and r["pse"] > 0.9
    with pytest.raises(ValueError, match="needs a depth map"):
        evaluate.score_relation(evaluate.from_mask(b), "behind", evaluate.from_mask(a))
    assert evaluate.score_relation(evaluate.from_mask(a), "near", evaluate.from_mask(b))["pse"] is None


def test_color_key_detector_finds_exact_masks_and_names_unknown_labels():
    from pos_core.detect import ColorKeyDetector

    det = ColorKeyDetector({"cat": (0.95, 0.05, 0.05), "dog": (0.05, 0.05, 0.95)}, tolerance=0.2)
    img = torch.full((16, 24, 3), 0.5)
    img[2:6, 1:5] = torch.tensor([0.9, 0.1, 0.1])
    img[8:12, 15:23] = torch.tensor([0.05, 0.05, 0.95])
    cat, dog = det.find(img, "Cat"), det.find(img, "dog")
    assert cat.boxes == [(1.0, 2.0, 5.0, 6.0)] and int(cat.mask.sum()) == 16
    assert dog.boxes == [(15.0, 8.0, 23.0, 12.0)] and int(dog.mask.sum()) == 32
    img[2:6, 1:5] = torch.tensor([0.5, 0.5, 0.5])
    assert not det.find(img, "cat").found  # gone: no box, empty mask
    with pytest.raises(ValueError, match="knows cat, dog"):
        det.find(img, "horse")
