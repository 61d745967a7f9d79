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
