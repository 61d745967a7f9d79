"""Tiny random-weight vision models: BLIP captioning with a real BERT tokenizer, and SAM 2
(in transformers' format, and as Meta's checkpoint)."""

from __future__ import annotations

from pathlib import Path

WORDS = [
    "a",
    "an",
    "the",
    "of",
    "on",
    "in",
    "with",
    "and",
    "there",
    "is",
    "are",
    "photo",
    "picture",
    "painting",
    "drawing",
    "cat",
    "dog",
    "man",
    "woman",
    "child",
    "sitting",
    "standing",
    "running",
    "red",
    "blue",
    "green",
    "white",
    "black",
    "table",
    "room",
    "street",
    "city",
    "beach",
    "tree",
    "house",
    "car",
]


def build_blip(folder: Path, seed: int) -> None:
    """BLIP conditional captioning (``BlipForConditionalGeneration``), as Salesforce's:
    a BERT WordPiece tokenizer with ``[DEC]`` as the decoder's start token."""
    import torch
    from transformers import (
        BertTokenizer,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
    )

    torch.manual_seed(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *letters, *".,!?'-0123456789"]
    tokens += [f"##{c}" for c in letters]
    tokenizer = BertTokenizer(vocab={t: i for i, t in enumerate(tokens)}, model_max_length=512)
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    text_config = {
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "max_position_embeddings": 128,
        "bos_token_id": tokenizer.bos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "sep_token_id": tokenizer.sep_token_id,
        "eos_token_id": tokenizer.sep_token_id,
    }
    vision_config = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "image_size": 64,
        "patch_size": 16,
    }
    config = BlipConfig(text_config=text_config, vision_config=vision_config, projection_dim=32)
    BlipForConditionalGeneration(config).save_pretrained(folder)
    image_processor = BlipImageProcessor(size={"height": 64, "width": 64})
    BlipProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)


def build_sam2(folder: Path, seed: int) -> None:
    """SAM 2 (``Sam2Model``): a Hiera backbone at the real 1024-pixel input, FPN neck, prompt
    encoder and mask decoder, each a few channels wide."""
    import torch
    from transformers import Sam2Config, Sam2ImageProcessor, Sam2Model, Sam2Processor

    torch.manual_seed(seed)
    backbone = {
        "model_type": "sam2_hiera_det_model",
        "hidden_size": 8,
        "num_attention_heads": 1,
        "embed_dim_per_stage": [8, 16, 32, 64],
        "num_attention_heads_per_stage": [1, 1, 2, 2],
        "blocks_per_stage": [1, 1, 2, 1],
        "global_attention_blocks": [3],
        "window_size_per_stage": [8, 4, 14, 7],
    }
    config = Sam2Config(
        vision_config={
            "backbone_config": backbone,
            "backbone_channel_list": [64, 32, 16, 8],
            "fpn_hidden_size": 32,
        },
        prompt_encoder_config={"hidden_size": 32, "mask_input_channels": 4},
        mask_decoder_config={
            "hidden_size": 32,
            "mlp_dim": 64,
            "num_attention_heads": 2,
            "iou_head_hidden_dim": 32,
        },
    )
    Sam2Model(config).save_pretrained(folder)
    Sam2Processor(image_processor=Sam2ImageProcessor()).save_pretrained(folder)


# A tiny SAM 2 that Meta's sam2 package can describe: Hiera's dims and heads double per stage,
# the mask decoder has Meta's 8 heads. The same architecture twice, independently: as Meta's
# yaml (sam2/configs/sam2/sam2_hiera_l.yaml's layout) and as transformers' config, so that a
# conversion reading the yaml wrongly gives a model that differs from the transformers twin.
TINY_SAM2_META_YAML = """\
# @package _global_
# A tiny random-weight SAM 2 laid out as Meta's sam2_hiera_l.yaml (for tests).
model:
  _target_: sam2.modeling.sam2_base.SAM2Base
  image_encoder:
    _target_: sam2.modeling.backbones.image_encoder.ImageEncoder
    scalp: 1
    trunk:
      _target_: sam2.modeling.backbones.hieradet.Hiera
      embed_dim: 8
      num_heads: 1
      stages: [1, 1, 2, 1]
      global_att_blocks: [3]
      window_pos_embed_bkg_spatial_size: [7, 7]
      window_spec: [8, 4, 14, 7]
    neck:
      _target_: sam2.modeling.backbones.image_encoder.FpnNeck
      d_model: 32
      backbone_channel_list: [64, 32, 16, 8]
      fpn_top_down_levels: [2, 3]
      fpn_interp_model: nearest
  num_maskmem: 7
  image_size: 1024
"""
TINY_SAM2_META_CONFIG = {
    "vision_config": {
        "backbone_config": {
            "model_type": "sam2_hiera_det_model",
            "hidden_size": 8,
            "num_attention_heads": 1,
            "embed_dim_per_stage": [8, 16, 32, 64],
            "num_attention_heads_per_stage": [1, 2, 4, 8],
            "blocks_per_stage": [1, 1, 2, 1],
            "global_attention_blocks": [3],
            "window_size_per_stage": [8, 4, 14, 7],
            "window_positional_embedding_background_size": [7, 7],
        },
        "backbone_channel_list": [64, 32, 16, 8],
        "fpn_hidden_size": 32,
    },
    "prompt_encoder_config": {"hidden_size": 32, "mask_input_channels": 4},
    "mask_decoder_config": {
        "hidden_size": 32,
        "mlp_dim": 64,
        "num_attention_heads": 8,
        "iou_head_hidden_dim": 32,
    },
}
# Some of the video model's tensors, which a real checkpoint holds beside the image model's.
TINY_SAM2_VIDEO_TENSORS = {
    "maskmem_tpos_enc": (7, 1, 1, 64),
    "no_mem_pos_enc": (1, 1, 32),
    "no_obj_ptr": (1, 32),
    "mask_downsample.weight": (1, 1, 4, 4),
    "memory_attention.norm.weight": (32,),
    "memory_encoder.out_proj.weight": (64, 32, 1, 1),
    "obj_ptr_proj.layers.0.weight": (32, 32),
}


def tiny_sam2_meta_model(seed: int):
    """The tiny Meta-describable SAM 2 as a ``Sam2Model``: every tensor random (none left at
    a constant init, so a tensor loaded into the wrong place changes the masks), the image
    and prompt positional encodings one matrix as in Meta's model."""
    import torch
    from transformers import Sam2Config, Sam2Model

    from tiny_models.diffusion import seeded

    seeded(seed)
    model = Sam2Model(Sam2Config(**TINY_SAM2_META_CONFIG)).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
        shared = model.prompt_encoder.shared_embedding.positional_embedding
        model.shared_image_embedding.positional_embedding.copy_(shared)
    return model


def build_sam2_meta(folder: Path, seed: int) -> None:
    """The tiny SAM 2 as Meta publishes SAM 2 (what ai-runner's download script fetches of
    facebook/sam2-hiera-large): ``sam2_hiera_large.pt`` holding ``{"model": state_dict}``
    under Meta's tensor names, video tensors included, and ``sam2_hiera_l.yaml``."""
    import torch

    from pipelines.sam2_checkpoint import meta_state_dict

    state = meta_state_dict(tiny_sam2_meta_model(seed).state_dict())
    generator = torch.Generator().manual_seed(seed)
    for name, shape in TINY_SAM2_VIDEO_TENSORS.items():
        state[name] = torch.randn(shape, generator=generator)
    torch.save({"model": state}, folder / "sam2_hiera_large.pt")
    (folder / "sam2_hiera_l.yaml").write_text(TINY_SAM2_META_YAML)


def build_sam2_meta_hf(folder: Path, seed: int) -> None:
    """The same tiny SAM 2 in transformers' format, as facebook/sam2-hiera-large-hf is the
    transformers conversion of facebook/sam2-hiera-large (weights and config, no processor)."""
    tiny_sam2_meta_model(seed).save_pretrained(folder)
