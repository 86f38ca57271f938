"""pos_core.distill: prompts crossed from objects, the recorded states, the batches and the loss."""

from __future__ import annotations

import pytest
import torch

from pos_core import distill


def test_crossed_prompts_every_ordered_pair_in_every_phrasing():
    got = distill.crossed_prompts(["cat", "dog", "cup"], ["a {a} left of a {b}"])
    assert len(got) == 6 and "a cat left of a dog" in got and "a dog left of a cat" in got
    assert len(distill.crossed_prompts(["cat", " dog ", "cat"])) == 2 * len(distill.PHRASINGS)  # duplicates dropped


@pytest.mark.parametrize("objects,phrasings,words", [
    (["cat"], distill.PHRASINGS, "at least two"),
    (["cat", "dog"], ["a {a} next to it"], r"\{b\}"),
    (["cat", "dog"], [], "none given"),
])
def test_crossed_prompts_says_what_is_missing(objects, phrasings, words):
    with pytest.raises(ValueError, match=words):
        distill.crossed_prompts(objects, phrasings)


def test_split_list_lines_or_commas():
    assert distill.split_list("cat\n dog \n\n") == ["cat", "dog"]
    assert distill.split_list("cat, dog,cup") == ["cat", "dog", "cup"]
    assert distill.split_list("") == []


def test_records_store_cpu_fp32_and_batch_in_order():
    r = distill.Records()
    for i in range(3):
        r.add(torch.full((4, 2, 2), float(i), dtype=torch.float16), 10.0 - i, torch.full((4, 2, 2), -float(i)), i % 2)
    assert len(r) == 3 and r.x[0].dtype == torch.float32
    x, s, t, p = r.batch([2, 0])
    assert x.shape == (2, 4, 2, 2) and s.tolist() == [8.0, 10.0] and float(t[0, 0, 0, 0]) == -2.0 and p == [0, 0]
    with pytest.raises(ValueError, match="differ in shape"):
        r.add(torch.zeros(4, 2, 2), 1.0, torch.zeros(4, 2, 3), 0)


def test_batches_cover_every_record_once_an_epoch_and_repeat_with_the_seed():
    b = distill.batches(10, 4, 5, seed=3)
    assert [len(x) for x in b] == [4] * 5
    first_epoch = b[0] + b[1]  # 8 of the first permutation, then its last 2 with the next one's start
    assert len(set(first_epoch)) == 8
    assert sorted(b[0] + b[1] + b[2][:2]) == list(range(10))
    assert b == distill.batches(10, 4, 5, seed=3) and b != distill.batches(10, 4, 5, seed=4)
    with pytest.raises(ValueError, match="no recorded steps"):
        distill.batches(0, 4, 1, 0)


def test_distill_loss_is_mse_and_checks_shapes():
    a, b = torch.zeros(2, 3), torch.ones(2, 3) * 2
    assert float(distill.distill_loss(a, b)) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="differ in shape"):
        distill.distill_loss(a, torch.zeros(3, 2))


def test_endpoint_targets_are_each_trajectorys_last_prediction():
    r = distill.Records()
    for traj in range(2):
        for step in range(3):
            r.add(torch.full((1, 2), float(step)), 10.0 - step, torch.full((1, 2), 10.0 * traj + step), prompt=traj)
    e = distill.endpoint_targets(r, 3)
    assert [float(t[0, 0]) for t in e.target] == [2, 2, 2, 12, 12, 12]
    assert [float(t[0, 0]) for t in r.target] == [0, 1, 2, 10, 11, 12]  # the records themselves are kept
    assert e.sigma == r.sigma and e.prompt == r.prompt
    with pytest.raises(ValueError, match="whole trajectories"):
        distill.endpoint_targets(r, 4)
