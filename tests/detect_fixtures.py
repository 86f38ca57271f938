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
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

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


def grounding_dino() -> Path:
    """A tiny Grounding DINO (1-layer Swin and BERT, 1 encoder and 2 decoder layers) with a small
    WordPiece vocabulary written here."""
    path = CACHE / "tiny-grounding-dino"
    if _done(path):
        return path
    from transformers import (BertConfig, BertTokenizer, GroundingDinoConfig, GroundingDinoForObjectDetection,
                              GroundingDinoImageProcessor, GroundingDinoProcessor, SwinConfig)

    torch.manual_seed(0)
    path.mkdir(parents=True, exist_ok=True)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "a", "cat", "dog", "vase", "clock", "cup",
             "bird", "table", "person", "car"] + [chr(c) for c in range(ord("a"), ord("z") + 1)]
    (path / "vocab.txt").write_text("\n".join(dict.fromkeys(words)) + "\n")
    tok = BertTokenizer(str(path / "vocab.txt"))
    backbone = SwinConfig(image_size=64, patch_size=4, embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2],
                          window_size=2, out_features=["stage2", "stage3", "stage4"])
    text = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=64)
    cfg = GroundingDinoConfig(backbone_config=backbone, text_config=text, d_model=32, encoder_layers=1,
                              decoder_layers=2, encoder_ffn_dim=64, decoder_ffn_dim=64, encoder_attention_heads=2,
                              decoder_attention_heads=2, num_queries=10, num_feature_levels=4,
                              encoder_n_points=2, decoder_n_points=2, max_text_len=32, use_pretrained_backbone=False,
                              use_timm_backbone=False)
    GroundingDinoForObjectDetection(cfg).eval().save_pretrained(path)
    GroundingDinoProcessor(image_processor=GroundingDinoImageProcessor(size={"shortest_edge": 64, "longest_edge": 96}),
                           tokenizer=tok).save_pretrained(path)
    return _mark(path)
