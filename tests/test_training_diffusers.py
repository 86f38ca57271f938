"""The diffusers example of docs/pos_lora.md runs as written (host-free): the code block is taken from the
page and executed, then one training step on a small random UNet2DConditionModel gets a PoS term from the
captured cross-attention level and sends its gradient into that level's attention projections."""

from __future__ import annotations

import re
from pathlib import Path

import torch

DOC = Path(__file__).resolve().parents[1] / "docs" / "pos_lora.md"


def example() -> dict:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.DOTALL)
    code = next(b for b in blocks if "def pos_training_step" in b)
    ns: dict = {}
    exec(compile(code, str(DOC), "exec"), ns)  # noqa: S102 - the page's own example, nothing else
    return ns


def small_unet():
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    # 32 x 32 latents: down_blocks.2 and up_blocks.1 sit at 8 x 8, one level, as the SD1 level at 16 x 16
    return UNet2DConditionModel(
        sample_size=32, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 32, 64, 64),
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, cross_attention_dim=768,
        attention_head_dim=8, norm_num_groups=8)


def test_the_documented_diffusers_step_runs_and_trains_the_level(clip_tokenizer):
    from diffusers import DDPMScheduler

    ns = example()
    unet = small_unet()
    store = ns["install_capture"](unet)
    captions = ["a photo of a cat to the left of a dog", "a red car", "a cup above a clock"]
    g = torch.Generator().manual_seed(1)
    latents, text = torch.randn(3, 4, 32, 32, generator=g), torch.randn(3, 77, 768, generator=g)
    torch.manual_seed(2)
    loss, diffusion, pos = ns["pos_training_step"](unet, store, clip_tokenizer, captions, latents, text,
                                                   DDPMScheduler(num_train_timesteps=1000), pos_weight=1.0)
    assert len(store) == 3  # down_blocks.2 (1 layer) + up_blocks.1 (2 layers), cross-attention only
    assert all(p.shape == (3, 64, 77) for p in store)
    assert torch.isfinite(loss) and float(pos.detach()) > 0
    torch.testing.assert_close(loss, diffusion + pos)
    unet.zero_grad()
    pos.backward()
    level = [p.grad for n, p in unet.named_parameters() if ".attn2.to_k." in n and n.startswith(("down_blocks.2.",
                                                                                                 "up_blocks.1."))]
    later = [p.grad for n, p in unet.named_parameters() if ".attn2.to_k." in n and n.startswith("up_blocks.3.")]
    assert level and all(g is not None and float(g.abs().sum()) > 0 for g in level)
    assert later and all(g is None or float(g.abs().sum()) == 0 for g in later)  # after the level: none
