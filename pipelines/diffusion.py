"""What every diffusers-based pipeline shares: loading (SDXL-Lightning's in ``lightning``),
split prompts, the warm-up, and the run of one request (accelerated as ``acceleration``
says, retried smaller out of memory). The safety checker is ``safety_checker``; the images
and their seeds ``generated_images``."""

from __future__ import annotations

import contextlib
import copy
import inspect
import json
import logging
import time
from abc import abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel

from pipelines.acceleration import Acceleration, request_shape
from pipelines.acceleration_report import AccelerationReport
from pipelines.base import ParamsT, Pipeline
from pipelines.diffusion_families import Family, family_of, lightning_unet
from pipelines.generated_images import GeneratedImages
from pipelines.lightning import lightning_base, load_lightning_unet, use_trailing_scheduler
from pipelines.lora import LoraAdapters, parse_loras
from pipelines.memory_retry import generate_retrying, smaller_decode_chunks
from pipelines.safety_checker import SafetyChecker
from runner.cancellation import diffusers_step_end
from runner.device import ModelFiles, prepare_model
from runner.errors import InvalidInput
from runner.hub import ModelNotFound
from runner.schemas import ImageResponse

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger("pipelines.diffusion")
MAX_PROMPTS = 3


def request_pipe(pipe: Any) -> Any:
    """``pipe`` for one request: the same models, its own scheduler and call state.

    A diffusers scheduler keeps per-call state (timesteps, step counters) and the pipeline
    keeps the guidance scale of its call, so requests running at once must not share them.
    """
    view = copy.copy(pipe)
    view.scheduler = copy.deepcopy(pipe.scheduler)
    return view


def prompt_slots(pipe: Any) -> int:
    """How many prompts the pipeline takes: 1, or 2-3 with several text encoders."""
    accepted = inspect.signature(pipe.__call__).parameters
    return 1 + sum(f"prompt_{i}" in accepted for i in range(2, MAX_PROMPTS + 1))


def split_prompt(field: str, text: str, slots: int) -> dict[str, str]:
    """``"a|b"`` -> ``{field: "a", field_2: "b"}`` for a pipeline with several text encoders.

    A pipeline with one text encoder takes the text as it is, ``|`` included. Parts beyond
    the model's encoders are left out with a log line, as ai-runner lets them through.
    """
    if slots == 1:
        return {field: text}
    parts = [part.strip() for part in text.split("|")]
    if len(parts) > slots:
        log.info(
            "%s has %d '|'-separated prompts but this model takes at most %d; the rest are ignored",
            field,
            len(parts),
            slots,
        )
        parts = parts[:slots]
    return {field if i == 0 else f"{field}_{i + 1}": part for i, part in enumerate(parts)}


class DiffusionPipeline(Pipeline[ParamsT, ParamsT, GeneratedImages]):
    """A diffusers pipeline from ``MODEL_DIR``, plus the runner's shared safety checker."""

    architectures: ClassVar[tuple[str, ...]]  # model_index.json class names it serves
    pipe: Any = None
    safety_checker: SafetyChecker | None = None
    family: Family | None = None
    acceleration: Acceleration | None = None

    @abstractmethod
    def diffusers_class(self, model_index: dict) -> Any:
        """The diffusers class (or auto pipeline) that loads the model ``model_index`` says."""

    def load(self) -> None:
        settings = self.settings
        swap = lightning_unet(self.model_id)
        if swap is None:
            files = prepare_model(settings, fp16_without_variant=False)
        else:  # the UNet repository holds no pipeline: the SDXL base provides the rest
            files = lightning_base(settings)
        model_index = read_model_index(files)
        self.family = family_of(self.model_id, model_index.get("_class_name"), self.architectures)
        if self.family.cuda_dtype and files.device == "cuda" and not settings.bfloat16:
            files = files.with_dtype(self.family.cuda_dtype)
        self.device, self.placement = files.device, files.placement
        extra: dict[str, Any] = {}
        if "safety_checker" in model_index:
            # The runner checks images with its own, shared safety checker.
            extra["safety_checker"] = None
            if "requires_safety_checker" in model_index:
                extra["requires_safety_checker"] = False
        if swap is not None:
            extra["unet"] = load_lightning_unet(settings, files, swap)
            self.family = swap.family
        log.info("loading %s from %s as %s", files.repo, files.path, self.placement.describe())
        pipe = self.diffusers_class(model_index).from_pretrained(
            files.repo,
            torch_dtype=self.placement.dtype,
            variant=self.placement.variant,
            **files.source,
            **extra,
        )
        if swap is not None:
            use_trailing_scheduler(pipe, swap, files.repo, self.model_id)
        pipe.to(self.device)
        pipe.set_progress_bar_config(disable=True)
        self.pipe = pipe
        self.log_family()
        self.acceleration = Acceleration.setup(settings, pipe, self.family, self.device)
        if settings.safety_checker:
            self.safety_checker = SafetyChecker(settings, self.device, self.placement.dtype)

    def log_family(self) -> None:
        family = self.family
        if family.steps is None:
            log.info("%s is a %s model", self.model_id, family.name)
            return
        when = "for every request" if family.fixed else "unless a request sets them"
        log.info(
            "%s is a %s model: %d steps and guidance %g %s",
            self.model_id,
            family.name,
            family.steps,
            family.guidance_scale,
            when,
        )

    def describe(self) -> str:
        parts = [type(self.pipe).__name__, self.placement.describe()]
        parts.append(f"safety checker {'on' if self.safety_checker else 'off'}")
        accelerated = self.acceleration.describe() if self.acceleration else None
        return f"{self.model_id} ({', '.join(parts + ([accelerated] if accelerated else []))})"

    def turn(self) -> contextlib.AbstractContextManager[None]:
        return self.acceleration.request_turn() if self.acceleration else contextlib.nullcontext()

    def acceleration_report(self) -> AccelerationReport | None:
        return self.acceleration.report if self.acceleration else None

    def warmup_size(self) -> tuple[int, int]:
        """The image size (width, height) a request that leaves the defaults carries."""
        raise NotImplementedError

    def warmup_params(self, width: int, height: int) -> ParamsT:
        """A cheap request whose images (or input image) have this size."""
        raise NotImplementedError

    def warmup(self) -> None:
        """Run the default size and those in ``WARMUP_SIZES``; with SFAST this compiles."""
        sizes = dict.fromkeys([self.warmup_size(), *self.settings.warmup_sizes])
        took = []
        assert self.acceleration is not None
        with self.acceleration.warming_up():
            for width, height in sizes:
                params = self.warmup_params(width, height)
                try:
                    request = self.check(params)
                except InvalidInput as exc:
                    log.warning("WARMUP_SIZES: %dx%d skipped: %s", width, height, exc.message)
                    continue
                started, graphs = time.perf_counter(), self.acceleration.compiled_graphs()
                self.predict(request)
                graphs = self.acceleration.compiled_graphs() - graphs
                compiled = f" ({graphs} graph{'s' * (graphs > 1)} compiled)" if graphs else ""
                took.append(f"{width}x{height} {time.perf_counter() - started:.1f}s{compiled}")
        log.info("warm-up took %.1fs: %s", self.acceleration.report.warmup_seconds, ", ".join(took))

    def generate(self, **kwargs: Any) -> Any:
        """The diffusers pipeline called for one request (on its own view of the pipeline,
        stopping at the next step if the request is cancelled), with SFAST and DEEPCACHE as
        they apply to it. Out of GPU memory, it is tried again in smaller pieces: one image
        at a time, a video's frames decoded in smaller chunks (``memory_retry``)."""
        return generate_retrying(self._generate_once, kwargs)

    def _generate_once(self, kwargs: dict[str, Any]) -> Any:
        pipe = request_pipe(self.pipe)
        if "decode_chunk_size" in kwargs:
            pipe.decode_latents = smaller_decode_chunks(pipe.decode_latents)
        shape = request_shape(kwargs)
        kwargs = kwargs | self.step_hooks()
        if self.acceleration is None:
            return pipe(**kwargs)
        steps = kwargs["num_inference_steps"]
        if "strength" in kwargs:  # image-to-image runs only the last steps x strength
            steps -= int(steps - steps * kwargs["strength"])
        return self.acceleration.run(lambda: pipe(**kwargs), steps, shape, pipe)

    def steps_and_guidance(self, params: BaseModel) -> tuple[int, float]:
        """The request's values, or the model family's where it left the contract default
        (or always, for a family whose values are fixed)."""
        steps, guidance = params.num_inference_steps, params.guidance_scale
        family = self.family
        if family is None or family.steps is None:
            return steps, guidance
        defaults = type(params).model_fields
        if family.fixed or steps == defaults["num_inference_steps"].default:
            steps = family.steps
        if family.fixed or guidance == defaults["guidance_scale"].default:
            guidance = family.guidance_scale
        return steps, guidance

    def check_for_model(self, params: BaseModel) -> None:
        """Checks that depend on the loaded model's family (a no-op until it is loaded):
        called from ``check``, and again in ``prepare`` (which runs once the model is loaded)
        for requests that arrived while it was loading."""
        accelerated = self.acceleration.report.compiler if self.acceleration else "none"
        if accelerated == "stable-fast" and parse_loras(
            getattr(params, "loras", ""), self.settings.max_loras
        ):
            raise InvalidInput(
                "loras: LoRA adapters cannot be applied to a model compiled with stable-fast "
                "(SFAST=true, COMPILER=stable-fast); the runner's operator can set COMPILER=torch."
            )
        family = self.family
        if family is None:
            return
        for side in ("width", "height"):
            value = getattr(params, side, None)
            if value is not None and value % family.size_multiple:
                raise InvalidInput(
                    f"{side} must be a multiple of {family.size_multiple} for {family.name} "
                    f"models, got {value}."
                )

    def step_hooks(self) -> dict[str, Any]:
        """Arguments that make the pipeline stop at the next step for a cancelled request."""
        return {"callback_on_step_end": diffusers_step_end}

    def nsfw_flags(self, images: list[Image.Image], requested: bool) -> list[bool]:
        """Each image's flag from the safety checker; all false when not asked or turned off."""
        if requested and self.safety_checker is not None:
            return self.safety_checker(images)
        return [False] * len(images)

    def encode(self, output: GeneratedImages) -> ImageResponse:
        return output.to_response()


class PromptedDiffusion(DiffusionPipeline[ParamsT]):
    """The pipelines a text prompt steers, with LoRAs: text-to-image and image-to-image."""

    def load(self) -> None:
        super().load()
        self.prompt_slots = prompt_slots(self.pipe)
        self.loras = LoraAdapters(self.pipe, self.settings)

    def prepare(self, params: BaseModel) -> None:
        """Fetch the LoRAs the request names that ``MODEL_DIR`` lacks."""
        self.check_for_model(params)
        self.loras.fetch_missing(params.loras)

    def prompts(self, params: BaseModel) -> dict[str, str]:
        """The request's prompt and negative prompt, split over the model's text encoders."""
        kwargs = split_prompt("prompt", params.prompt, self.prompt_slots)
        if not params.negative_prompt:
            return kwargs
        if self.family is not None and not self.family.negative_prompt:
            log.info("negative_prompt ignored: %s models do not take one", self.family.name)
            return kwargs
        return kwargs | split_prompt("negative_prompt", params.negative_prompt, self.prompt_slots)


def read_model_index(files: ModelFiles) -> dict:
    index_file = files.path / "model_index.json"
    if not index_file.exists():
        raise ModelNotFound(
            f"{files.repo} in {files.path} is not a diffusers pipeline (no model_index.json)"
        )
    return json.loads(index_file.read_text())
