"""Tiny random-weight detector, SAM and depth models, saved with save_pretrained and loaded back
through the real transformers loading code (seeded, cached outside the repo)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

CACHE = Path(os.environ.get("POS_TEST_CACHE", Path.home() / ".cache" / "pos_spatial_tests")) / "hf_models"
VERSION = "1"


def _done(path: Path) -> bool:
    return (path / f".built-{VERSION}").exists()


def _mark(path: Path) -> Path:
    (path / f".built-{VERSION}").write_text("ok")
    return path


def owlv2(tokenizer_dir: str) -> Path:
    """A 2-layer OWLv2 with the real CLIP tokenizer files in `tokenizer_dir` (vocab.json, merges.txt)."""
    path = CACHE / "tiny-owlv2"
    if _done(path):
        return path
    from transformers import (CLIPTokenizer, Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessor,
                              Owlv2Processor)

    torch.manual_seed(0)
    cfg = Owlv2Config(
        text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                         vocab_size=49408, max_position_embeddings=16),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=64, patch_size=16),
        projection_dim=32)
    Owlv2ForObjectDetection(cfg).eval().save_pretrained(path)
    proc = Owlv2Processor(image_processor=Owlv2ImageProcessor(size={"height": 64, "width": 64}),
                          tokenizer=CLIPTokenizer.from_pretrained(tokenizer_dir, model_max_length=16))
    proc.save_pretrained(path)
    return _mark(path)


def sam() -> Path:
    """A tiny SAM (ViT with 2 layers) for box-prompted masks."""
    path = CACHE / "tiny-sam"
    if _done(path):
        return path
    from transformers import SamConfig, SamImageProcessor, SamModel, SamProcessor

    torch.manual_seed(0)
    cfg = SamConfig(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=128, patch_size=16, output_channels=32, global_attn_indexes=[1],
                           window_size=4, mlp_dim=64, num_pos_feats=16),
        prompt_encoder_config=dict(hidden_size=32, image_size=128, patch_size=16, image_embedding_size=8),
        mask_decoder_config=dict(hidden_size=32, mlp_dim=64, num_hidden_layers=2, num_attention_heads=2,
                                 iou_head_hidden_dim=32))
    SamModel(cfg).eval().save_pretrained(path)
    SamProcessor(image_processor=SamImageProcessor(size={"longest_edge": 128}, pad_size={"height": 128, "width": 128},
                                                   mask_size={"longest_edge": 32},
                                                   mask_pad_size={"height": 32, "width": 32})).save_pretrained(path)
    return _mark(path)


def depth_anything() -> Path:
    """A tiny Depth Anything (2-layer DINOv2 backbone)."""
    path = CACHE / "tiny-depth-anything"
    if _done(path):
        return path
    from transformers import AutoImageProcessor, DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

    torch.manual_seed(0)
    backbone = Dinov2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
                            image_size=56, patch_size=14, out_features=["stage1", "stage2", "stage3", "stage4"],
                            reshape_hidden_states=False)
    cfg = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=32, neck_hidden_sizes=[16, 16, 16, 16],
                              fusion_hidden_size=16, head_hidden_size=16, patch_size=14)
    DepthAnythingForDepthEstimation(cfg).eval().save_pretrained(path)
    from transformers import DPTImageProcessor

    DPTImageProcessor(size={"height": 56, "width": 56}, keep_aspect_ratio=False, ensure_multiple_of=14,
                      do_pad=False).save_pretrained(path)
    return _mark(path)
