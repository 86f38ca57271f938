"""ComfyUI may run the negative prompt in a model call of its own (cond and uncond split when memory is
short): attention capture must then record nothing for that call instead of failing (seen on a loaded
CPU machine as `torch.cat(): expected a non-empty list of Tensors` inside the sampler)."""

from __future__ import annotations

import torch


def test_cond_rows_of_split_calls(host):
    from pos_spatial_pack.nodes.families.base import cond_rows

    assert cond_rows([0], 2) == slice(None) and cond_rows(None, 3) == slice(None)
    assert cond_rows([1, 0], 4).tolist() == [2, 3]
    only_uncond = cond_rows([1], 2)
    assert only_uncond.numel() == 0
    q = torch.randn(2, 16, 8)
    assert q[only_uncond].shape == (0, 16, 8)


def test_capture_survives_an_uncond_only_call(host):
    from pos_spatial_pack.pos_core import attention

    q, k = torch.randn(2, 16, 8), torch.randn(2, 77, 8)
    from pos_spatial_pack.nodes.families.base import cond_rows

    maps = attention.token_maps(q[cond_rows([1], 2)], k[cond_rows([1], 2)], 2, [(5,), (9,)], 4, 4)
    assert maps.shape == (0, 2, 4, 4)
    from pos_spatial_pack.nodes.psg_patch import mean_over_layers

    joined = mean_over_layers([maps, maps, torch.rand(1, 2, 4, 4), torch.rand(1, 2, 4, 4)], 2)
    assert joined.shape == (1, 2, 4, 4)
