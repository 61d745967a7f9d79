"""Tiny random-weight vision-language models: BLIP captioning with a real BERT tokenizer."""

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
