"""Tiny SD3 and FLUX.1 pipelines: transformer denoisers on 16-channel latents, trained with
flow matching, prompted through CLIP and T5 encoders, as the real ones."""

from __future__ import annotations

from pathlib import Path

from tiny_models.clip_tokenizer import save_clip_tokenizer
from tiny_models.diffusion import TEXT_HIDDEN, seeded, text_config, vae
from tiny_models.t5_tokenizer import save_t5_tokenizer

T5_HIDDEN = 2 * TEXT_HIDDEN  # SD3 pads both CLIP encoders' concatenated states to T5's width
HEADS, HEAD_DIM = 2, 16


def _t5_encoder(vocab_size: int):
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(
        T5Config(
            vocab_size=vocab_size,
            d_model=T5_HIDDEN,
            d_kv=HEAD_DIM,
            d_ff=2 * T5_HIDDEN,
            num_layers=1,
            num_heads=4,
            relative_attention_num_buckets=8,
            feed_forward_proj="gated-gelu",
            is_encoder_decoder=False,
            use_cache=False,
        )
    )


def _clip_tokenizers(folder: Path, names: tuple[str, ...]):
    from transformers import CLIPTokenizer

    for name in names:
        save_clip_tokenizer(folder / name)
    return [CLIPTokenizer.from_pretrained(folder / name) for name in names]


def _t5_tokenizer(folder: Path, name: str, max_length: int):
    from transformers import T5TokenizerFast

    vocab_size = save_t5_tokenizer(folder / name, max_length)
    return vocab_size, T5TokenizerFast.from_pretrained(folder / name)


def build_sd3(folder: Path, seed: int) -> None:
    """Stable Diffusion 3: an MMDiT transformer, two CLIP encoders with projections and a
    T5 encoder (three prompts), a 16-channel VAE with a shift, flow-matching Euler."""
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
    )
    from transformers import CLIPTextModelWithProjection

    seeded(seed)
    tokenizer, tokenizer_2 = _clip_tokenizers(folder, ("tokenizer", "tokenizer_2"))
    t5_vocab, tokenizer_3 = _t5_tokenizer(folder, "tokenizer_3", 256)
    clip_vocab = len(tokenizer)
    transformer = SD3Transformer2DModel(
        sample_size=128,
        patch_size=2,
        in_channels=16,
        out_channels=16,
        num_layers=2,
        attention_head_dim=HEAD_DIM,
        num_attention_heads=HEADS,
        joint_attention_dim=T5_HIDDEN,
        caption_projection_dim=HEADS * HEAD_DIM,
        pooled_projection_dim=2 * TEXT_HIDDEN,  # both CLIP projections, concatenated
        pos_embed_max_size=96,
    )
    pipeline = StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0),
        vae=vae(1.5305, shift_factor=0.0609, latent_channels=16, **_no_quant_convs()),
        text_encoder=CLIPTextModelWithProjection(text_config(clip_vocab)),
        tokenizer=tokenizer,
        text_encoder_2=CLIPTextModelWithProjection(text_config(clip_vocab)),
        tokenizer_2=tokenizer_2,
        text_encoder_3=_t5_encoder(t5_vocab),
        tokenizer_3=tokenizer_3,
    )
    pipeline.save_pretrained(folder)
    _clip_tokenizers(folder, ("tokenizer", "tokenizer_2"))
    save_t5_tokenizer(folder / "tokenizer_3", 256)


def build_flux_schnell(folder: Path, seed: int) -> None:
    """FLUX.1 schnell: a double- and single-stream transformer on 2x2-packed 16-channel
    latents, CLIP (pooled) and T5 encoders, no guidance embedding, static shift."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextModel

    seeded(seed)
    (tokenizer,) = _clip_tokenizers(folder, ("tokenizer",))
    t5_vocab, tokenizer_2 = _t5_tokenizer(folder, "tokenizer_2", 256)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=64,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=HEAD_DIM,
        num_attention_heads=HEADS,
        joint_attention_dim=T5_HIDDEN,
        pooled_projection_dim=TEXT_HIDDEN,  # CLIP's pooled output
        guidance_embeds=False,
        axes_dims_rope=(4, 6, 6),
    )
    pipeline = FluxPipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(
            num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=False
        ),
        vae=vae(0.3611, shift_factor=0.1159, latent_channels=16, **_no_quant_convs()),
        text_encoder=CLIPTextModel(text_config(len(tokenizer))),
        tokenizer=tokenizer,
        text_encoder_2=_t5_encoder(t5_vocab),
        tokenizer_2=tokenizer_2,
    )
    pipeline.save_pretrained(folder)
    _clip_tokenizers(folder, ("tokenizer",))
    save_t5_tokenizer(folder / "tokenizer_2", 256)


def _no_quant_convs() -> dict:
    return {"use_quant_conv": False, "use_post_quant_conv": False}
