"""A tiny random-weight Stable Video Diffusion (img2vid-xt): the real classes and config
formats, shrunk.

As the real model: a spatio-temporal UNet reading the noisy latents and the input image's
latents (8 channels), conditioned on a CLIP image embedding and on fps, motion bucket and
noise strength; a VAE 8x smaller than the frames whose decoder mixes frames in time; Euler
with Karras sigmas and v-prediction. Its frame count (``num_frames`` in the UNet config,
25 in the real one) is kept small, so a few frames decode quickly on a CPU.
"""

from __future__ import annotations

from pathlib import Path

from tiny_models.diffusion import image_processor, seeded

NUM_FRAMES = 4
IMAGE_EMBED = 32
TIME_EMBED = 8  # per added time id: fps, motion bucket, noise strength


def _unet():
    """Attention at the higher resolution and none at the lowest, as in the real UNet."""
    from diffusers import UNetSpatioTemporalConditionModel

    return UNetSpatioTemporalConditionModel(
        sample_size=8,
        in_channels=8,
        out_channels=4,
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        block_out_channels=(32, 64),
        addition_time_embed_dim=TIME_EMBED,
        projection_class_embeddings_input_dim=3 * TIME_EMBED,
        layers_per_block=1,
        cross_attention_dim=IMAGE_EMBED,
        num_attention_heads=(2, 4),
        num_frames=NUM_FRAMES,
    )


def _vae():
    """Four blocks (frames map to latents 8x smaller); 32 channels, the temporal decoder's
    fixed group-norm size."""
    from diffusers import AutoencoderKLTemporalDecoder

    return AutoencoderKLTemporalDecoder(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        block_out_channels=(32, 32, 32, 32),
        layers_per_block=1,
        latent_channels=4,
        sample_size=64,
        scaling_factor=0.18215,
        force_upcast=True,
    )


def _image_encoder():
    """CLIP ViT at the real 224-pixel input and 14-pixel patches, shrunk in width and depth."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    return CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=224,
            patch_size=14,
            projection_dim=IMAGE_EMBED,
            hidden_act="gelu",
        )
    )


def _scheduler():
    """stable-video-diffusion-img2vid-xt's scheduler config: the EDM noise range (sigma 0.002
    to 700) on Karras sigmas, v-prediction, continuous timesteps."""
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="v_prediction",
        interpolation_type="linear",
        use_karras_sigmas=True,
        sigma_min=0.002,
        sigma_max=700.0,
        timestep_spacing="leading",
        timestep_type="continuous",
        steps_offset=1,
    )


def build_svd(folder: Path, seed: int) -> None:
    from diffusers import StableVideoDiffusionPipeline

    seeded(seed)
    pipeline = StableVideoDiffusionPipeline(
        vae=_vae(),
        image_encoder=_image_encoder(),
        unet=_unet(),
        scheduler=_scheduler(),
        feature_extractor=image_processor(),
    )
    pipeline.save_pretrained(folder)
