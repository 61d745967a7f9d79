"""Tiny random-weight diffusion models: the real classes and config formats, shrunk.

The VAEs keep four blocks, so images map to latents 8x smaller as in the real models, and
self-attention sits only at the lowest resolution, so a 1024x576 image stays cheap on a CPU.
"""

from __future__ import annotations

from pathlib import Path

from tiny_models.clip_tokenizer import save_clip_tokenizer

TEXT_HIDDEN = 32
LIGHTNING_STEPS = (2, 4, 8)


def seeded(seed: int) -> None:
    import torch

    torch.manual_seed(seed)


def vae(scaling_factor: float, **architecture: object):
    """A tiny ``AutoencoderKL``; ``architecture`` sets latent channels and shift for the
    16-channel VAEs of SD3 and FLUX."""
    from diffusers import AutoencoderKL

    config = dict(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(4, 8, 8, 8),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=256,
        scaling_factor=scaling_factor,
    )
    return AutoencoderKL(**(config | architecture))


def text_config(vocab_size: int, projection_dim: int = TEXT_HIDDEN):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=TEXT_HIDDEN,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        projection_dim=projection_dim,
        bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1,
        pad_token_id=vocab_size - 1,
        hidden_act="quick_gelu",
    )


def image_processor():
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(crop_size={"height": 224, "width": 224}, size={"shortest_edge": 224})


def _safety_checker(flag_everything: bool):
    """A tiny ``StableDiffusionSafetyChecker``. Its concept thresholds are what the real one
    compares cosine similarities against: -1 makes every image count as flagged."""
    import torch
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig

    config = CLIPConfig(
        text_config={
            "hidden_size": TEXT_HIDDEN,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 4,
            "vocab_size": 1000,
            "bos_token_id": 998,
            "eos_token_id": 999,
            "pad_token_id": 999,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "image_size": 224,
            "patch_size": 32,
        },
        projection_dim=TEXT_HIDDEN,
    )
    checker = StableDiffusionSafetyChecker(config)
    with torch.no_grad():
        checker.concept_embeds.normal_()
        checker.special_care_embeds.normal_()
        threshold = -1.0 if flag_everything else 1.0
        checker.concept_embeds_weights.fill_(threshold)
        checker.special_care_embeds_weights.fill_(threshold)
    return checker


def build_safety_checker(folder: Path, seed: int, flag_everything: bool = False) -> None:
    seeded(seed)
    _safety_checker(flag_everything).save_pretrained(folder)
    image_processor().save_pretrained(folder)


def _unet(**architecture: object):
    """A tiny ``UNet2DConditionModel``: three levels, self-attention only at the lowest;
    ``architecture`` sets what differs between families (input channels, conditioning)."""
    from diffusers import UNet2DConditionModel

    config = {
        "sample_size": 64,
        "in_channels": 4,
        "out_channels": 4,
        "down_block_types": ("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
        "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        "block_out_channels": (8, 16, 16),
        "layers_per_block": 1,
        "norm_num_groups": 4,
        "cross_attention_dim": TEXT_HIDDEN,
        "attention_head_dim": 8,
    }
    return UNet2DConditionModel(**(config | architecture))


def sd15_unet():
    return _unet()


def build_sd15(folder: Path, seed: int) -> None:
    """Stable Diffusion 1.x: one CLIP text encoder, PNDM, a bundled safety checker."""
    from diffusers import PNDMScheduler, StableDiffusionPipeline
    from transformers import CLIPTextModel, CLIPTokenizer

    seeded(seed)
    vocab_size = save_clip_tokenizer(folder / "tokenizer")
    unet = sd15_unet()
    scheduler = PNDMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        set_alpha_to_one=False,
        skip_prk_steps=True,
        steps_offset=1,
    )
    pipeline = StableDiffusionPipeline(
        vae=vae(0.18215),
        text_encoder=CLIPTextModel(text_config(vocab_size)),
        tokenizer=CLIPTokenizer.from_pretrained(folder / "tokenizer"),
        unet=unet,
        scheduler=scheduler,
        safety_checker=_safety_checker(flag_everything=False),
        feature_extractor=image_processor(),
        requires_safety_checker=True,
    )
    pipeline.save_pretrained(folder)
    save_clip_tokenizer(folder / "tokenizer")


def build_instruct_pix2pix(folder: Path, seed: int) -> None:
    """InstructPix2Pix: SD 1.x whose UNet also reads the input image's latents (8 input
    channels), with Euler ancestral, as timbrooks/instruct-pix2pix."""
    from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionInstructPix2PixPipeline
    from transformers import CLIPTextModel, CLIPTokenizer

    seeded(seed)
    vocab_size = save_clip_tokenizer(folder / "tokenizer")
    pipeline = StableDiffusionInstructPix2PixPipeline(
        vae=vae(0.18215),
        text_encoder=CLIPTextModel(text_config(vocab_size)),
        tokenizer=CLIPTokenizer.from_pretrained(folder / "tokenizer"),
        unet=_unet(in_channels=8),
        scheduler=EulerAncestralDiscreteScheduler(
            beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear"
        ),
        safety_checker=None,
        feature_extractor=image_processor(),
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(folder)
    save_clip_tokenizer(folder / "tokenizer")


def sdxl_unet():
    """The tiny SDXL UNet: both encoders' hidden states as context, micro-conditioning."""
    time_embed_dim = 8
    return _unet(
        sample_size=128,
        cross_attention_dim=2 * TEXT_HIDDEN,  # both encoders' hidden states, concatenated
        attention_head_dim=(2, 4, 4),
        transformer_layers_per_block=(1, 1, 2),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=time_embed_dim,
        projection_class_embeddings_input_dim=6 * time_embed_dim + TEXT_HIDDEN,
    )


def build_sdxl_lightning(folder: Path, seed: int) -> None:
    """ByteDance/SDXL-Lightning's layout: no pipeline, only distilled UNet weights for the
    SDXL base (``sdxl_lightning_{2,4,8}step_unet.safetensors``, diffusers key names)."""
    from safetensors.torch import save_file

    for offset, steps in enumerate(LIGHTNING_STEPS):
        seeded(seed + offset)
        state = {name: tensor.contiguous() for name, tensor in sdxl_unet().state_dict().items()}
        save_file(state, folder / f"sdxl_lightning_{steps}step_unet.safetensors")


def build_sdxl(folder: Path, seed: int) -> None:
    """Stable Diffusion XL: two CLIP text encoders, micro-conditioning, Euler."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    seeded(seed)
    vocab_size = save_clip_tokenizer(folder / "tokenizer")
    save_clip_tokenizer(folder / "tokenizer_2", pad_token="!")
    unet = sdxl_unet()
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        steps_offset=1,
        timestep_spacing="leading",
        interpolation_type="linear",
        prediction_type="epsilon",
        use_karras_sigmas=False,
    )
    pipeline = StableDiffusionXLPipeline(
        vae=vae(0.13025),
        text_encoder=CLIPTextModel(text_config(vocab_size)),
        text_encoder_2=CLIPTextModelWithProjection(text_config(vocab_size)),
        tokenizer=CLIPTokenizer.from_pretrained(folder / "tokenizer"),
        tokenizer_2=CLIPTokenizer.from_pretrained(folder / "tokenizer_2"),
        unet=unet,
        scheduler=scheduler,
        force_zeros_for_empty_prompt=True,
    )
    pipeline.save_pretrained(folder)
    save_clip_tokenizer(folder / "tokenizer")
    save_clip_tokenizer(folder / "tokenizer_2", pad_token="!")


def build_x4_upscaler(folder: Path, seed: int) -> None:
    """Stable Diffusion x4 upscaler: a 7-channel UNet (latents plus the low-resolution image)
    with a noise-level class embedding, a VAE 4x larger than its latents, DDIM with
    v-prediction, and the DDPM low-resolution scheduler that noises the input."""
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        DDPMScheduler,
        StableDiffusionUpscalePipeline,
    )
    from transformers import CLIPTextModel, CLIPTokenizer

    seeded(seed)
    vocab_size = save_clip_tokenizer(folder / "tokenizer")
    unet = _unet(
        sample_size=32,
        in_channels=7,
        use_linear_projection=True,
        num_class_embeds=1000,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(4, 8, 8),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        scaling_factor=0.08333,
    )
    pipeline = StableDiffusionUpscalePipeline(
        vae=vae,
        text_encoder=CLIPTextModel(text_config(vocab_size)),
        tokenizer=CLIPTokenizer.from_pretrained(folder / "tokenizer"),
        unet=unet,
        low_res_scheduler=DDPMScheduler(
            beta_schedule="scaled_linear", beta_start=0.0001, beta_end=0.02
        ),
        scheduler=DDIMScheduler(
            beta_schedule="scaled_linear",
            beta_start=0.00085,
            beta_end=0.012,
            prediction_type="v_prediction",
            clip_sample=False,
            set_alpha_to_one=False,
            steps_offset=1,
        ),
        max_noise_level=350,
    )
    pipeline.save_pretrained(folder)
    save_clip_tokenizer(folder / "tokenizer")
