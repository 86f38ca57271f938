"""Host test of the measured order between the two objectives of PoS Guidance, on 40 held-out (prompt,
seed) cases of the reduced testbed: the PoS objective at its default scale (20) against the center
objective at the scale tuned for it (320).

Measured (docs/measured_effect.md, "PoS against the center objective and layout"): they are not
separated. On these 40 cases center@320 got 47.5 % of relations right and psg@20 40.0 % (unguided 22.5 %;
paired difference psg - center -7.5 points, bootstrap 95 % interval [-20, +5]); on the full testbed's
200 held-out cases 79.5 % against 75.5 %, also inside each other's intervals. So the test guards that
closeness, 12.5 points (5 of 40 cases) either side of the measured -7.5:

- psg@20 - center@320 >= -0.20: fails if the PoS objective stops working while the center hinge still
  does (a regression in the PoS loss: its sign, the marginals, the token binding; psg@20 at the unguided
  22.5 % gives -25 points);
- psg@20 - center@320 <= +0.05: fails if the center objective stops working while PoS still does (a
  regression in the centroids, the hinge's sign or axis, or `objective=center` no longer reaching the
  gradient pass at its scale; center at the unguided level gives +17.5 points).

The model is test_host_effect.py's reduced testbed (its `reduced` fixture: 1200 steps, trained once into
the test cache, 8-30 min; POS_SKIP_SLOW=1 skips this test like that one), the cases are that test's
(eval_cases(40, seed=777)), and the run goes through the pack's nodes as there (effect.Bench).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from test_host_effect import reduced  # noqa: F401  (the fixture: the cached reduced testbed)

ROOT = Path(__file__).resolve().parents[1]
CASES = 40
CASE_SEED = 777  # test_host_effect.py's cases
PSG_SCALE = 20.0  # PoS Guidance's default
# tuned on the full testbed: effect.py tune --way center --grid 5,20,80,320 --n-val 60 chose 320
# (85.0 % relation accuracy on its 60 validation cases; 20 gave 50.0 %)
CENTER_SCALE = 320.0
# the band on psg - center relation accuracy: measured -0.075 here, +-0.125 (5 of the 40 cases)
LEAD_MIN, LEAD_MAX = -0.20, 0.05

pytestmark = pytest.mark.skipif(os.environ.get("POS_SKIP_SLOW") == "1",
                                reason="POS_SKIP_SLOW=1: this test needs the reduced trained testbed (8-30 min once)")


def test_pos_default_and_center_tuned_stay_in_their_measured_order(host, reduced):  # noqa: F811
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import effect
    import testbed

    bench = effect.Bench(reduced)
    cases = testbed.eval_cases(CASES, seed=CASE_SEED)
    psg_way, center_way = f"psg@{PSG_SCALE:g}", f"center@{CENTER_SCALE:g}"
    acc, drawn, right = {}, {}, {}
    for way in (psg_way, center_way):
        rows = [effect.score_case(testbed, bench.run(way, p, seed)[0], s, rel, o) for p, s, rel, o, seed in cases]
        acc[way] = sum(r["correct"] for r in rows) / len(rows)
        drawn[way] = sum(r["drawn"] for r in rows) / len(rows)
        right[way] = "".join("1" if r["correct"] else "0" for r in rows)
    print(f"\nobjective order on {CASES} held-out cases: relation accuracy {acc}, objects drawn {drawn}, "
          f"right per case {right}")
    lead = acc[psg_way] - acc[center_way]
    assert lead >= LEAD_MIN, (f"the PoS objective fell behind the center objective by more than {-LEAD_MIN:.2f} "
                              f"(measured -0.075): relation accuracy {acc}, objects drawn {drawn}")
    assert lead <= LEAD_MAX, (f"the center objective fell behind the PoS objective by more than {LEAD_MAX:.2f} "
                              f"(measured: 0.075 ahead): relation accuracy {acc}, objects drawn {drawn}")
