"""How far guidance moves the Flux testbed's latents out of the range the model learned: on 10 cases each of
two and three objects, the median largest model-space value and the median per-pixel norm on objects and on
the background, for the mixed (Config(three=0.5)) and the two-object-only checkpoints (both must be trained).

    COMFYUI_PATH=/path/to/ComfyUI POS_THREADS=1 python benchmarks/latent_range.py [unet]

`unet`: the UNet testbed's 2,400-step checkpoint instead (two-object cases; unguided, psg@20, psg@320).

The scenes' values are 0 and +/-0.9 (an object pixel's norm 1.56); effect.py eval records the same largest
value per case on every run (its "in range" columns)."""
import sys
UNET = sys.argv[1:] == ["unet"]
sys.argv = ["x"]
sys.path[:0] = [str(__import__("pathlib").Path(__file__).resolve().parent)]
import effect
effect.setup()
import torch, testbed, testbed_flux
from pos_core import scenes
RUNS = ((("unet", testbed.Config()),) if UNET else (("mixed", testbed.Config(three=0.5)), ("two-only", testbed.Config())))
for cfgname, cfg in RUNS:
    if UNET:
        b = effect.Bench(testbed.checkpoint_path(cfg), testbed, max_step=0.0)
    else:  # the uncapped step (the paper's), as documented; Flux / SD3 now default to max_step 0.3
        b = effect.Bench(testbed_flux.checkpoint_path(cfg), testbed_flux, "s0,s1", max_step=0.0)
    for objects in ((2,) if UNET else (2, 3)):
        cases = effect.cases_of(objects, 10)
        for w in (("unguided", "psg@20", "psg@320") if UNET else ("unguided", "psg@5", "psg@20", "layout", "center@80")):
            if objects == 2 and w in ("layout", "center@80"):
                continue
            mx, bgn, objn = [], [], []
            for case in cases:
                l, _ = b.run(w, case[0], case[-1])
                m = l * scenes.SCALE_FACTOR  # model space: objects are 0.9 per channel, background 0
                n = m.norm(dim=0)
                seg = scenes.segment(m)
                mx.append(float(m.abs().max()))
                bgn.append(float(n[seg < 0].median()) if (seg < 0).any() else float("nan"))
                objn.append(float(n[seg >= 0].median()) if (seg >= 0).any() else float("nan"))
            med = lambda v: sorted(v)[len(v) // 2]
            print(f"{cfgname} {objects}-obj {w:10s} model-space max|v| median {med(mx):9.2f} (max {max(mx):9.2f}); "
                  f"pixel norm median: objects {med(objn):8.2f} background {med(bgn):8.2f}  (an object pixel: {float(scenes.class_vectors()[0].norm()):.2f})")
