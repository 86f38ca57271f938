"""Host-free test of the testbed's Config key: fields added later must not rename cached checkpoints."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import testbed  # noqa: E402  (torch and pos_core only at import; ComfyUI is imported inside functions)


def test_default_keys_are_unchanged():
    # the names of the checkpoints cached in ~/.cache/pos_spatial_testbed before Config.three existed
    assert testbed.Config().key() == "pos_testbed_isolated_23f993a8a9"
    assert testbed.Config(three=0.0).key() == testbed.Config().key()


def test_three_enters_the_key_only_when_set():
    keys = {testbed.Config(three=v).key() for v in (0.0, 0.25, 0.5)}
    assert len(keys) == 3


def test_captions_mix_in_three_object_ones_only_when_asked():
    two = testbed.captions(testbed.Config())
    mixed = testbed.captions(testbed.Config(three=0.5))
    assert two == list(testbed.training_prompts(0)) and all(len(c) == 4 for c in two)
    assert mixed[:len(two)] == two and all(len(c) == 6 for c in mixed[len(two):]) and len(mixed) > len(two)
