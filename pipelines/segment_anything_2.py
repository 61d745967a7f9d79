"""segment-anything-2: SAM 2 masks from point, box and mask prompts, through transformers."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from pipelines.base import Pipeline, Route
from pipelines.checks import json_field
from pipelines.image_shapes import processor_input
from pipelines.sam2_checkpoint import MetaCheckpoint, find_meta_checkpoint, load_meta_checkpoint
from runner.device import prepare_model
from runner.errors import InvalidInput
from runner.hub import ModelNotFound, locate_model
from runner.media.uploads import Upload
from runner.schemas import optional_str

log = logging.getLogger("pipelines.segment_anything_2")
MASK_INPUT_SIDE = 256  # SAM's low-resolution mask size
LOGIT_DECIMALS = 4


class SegmentAnything2Params(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    image: Annotated[Image.Image, Upload("image", "Image to segment.")]
    model_id: str = Field("", description="Hugging Face model ID used for image generation.")
    point_coords: str | None = optional_str(
        "Nx2 array of point prompts to the model, where each point is in (X,Y) in pixels."
    )
    point_labels: str | None = optional_str(
        "Labels for the point prompts, where 1 indicates a foreground point and 0 indicates a "
        "background point."
    )
    box: str | None = optional_str(
        "A length 4 array given as a box prompt to the model, in XYXY format."
    )
    mask_input: str | None = optional_str(
        "A low-resolution mask input to the model, typically from a previous prediction "
        "iteration, with the form 1xHxW (H=W=256 for SAM)."
    )
    multimask_output: bool = Field(
        True,
        description=(
            "If true, the model will return three masks for ambiguous input prompts, often "
            "producing better masks than a single prediction."
        ),
    )
    return_logits: bool = Field(
        True,
        description="If true, returns un-thresholded mask logits instead of a binary mask.",
    )
    normalize_coords: bool = Field(
        True,
        description=(
            "If true, the point coordinates will be normalized to the range [0,1], with "
            "point_coords expected to be with respect to image dimensions."
        ),
    )


class MasksResponse(BaseModel):
    """Response model for object segmentation."""

    masks: str = Field(description="The generated masks.")
    scores: str = Field(description="The model's confidence scores for each generated mask.")
    logits: str = Field(description="The raw, unnormalized predictions (logits) for the masks.")


@dataclass
class Prompts:
    """The prompts in the image's pixel coordinates, as the processor takes them."""

    points: list[list[float]] | None
    labels: list[int] | None
    box: list[float] | None
    mask: np.ndarray | None


@dataclass
class Segmentation:
    masks: np.ndarray  # (N, H, W): logits, or 0/1
    scores: np.ndarray  # (N,), descending
    logits: np.ndarray  # (N, 256, 256): always, as ai-runner answers (return_logits or not)


def _json_field(name: str, text: str | None) -> Any:
    if text is None or not text.strip():
        return None
    return json_field(name, text)


def _numbers(name: str, value: Any, shape: str, dtype: type = np.float64) -> np.ndarray:
    try:
        with np.errstate(over="ignore"):  # a float32 past its range: refused just below
            array = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError, OverflowError):
        raise InvalidInput(f"{name} must be {shape} of numbers.") from None
    if not np.all(np.isfinite(array)):
        raise InvalidInput(f"{name} must hold finite numbers.")
    return array


def parse_prompts(params: SegmentAnything2Params, max_points: int) -> Prompts:
    """Check the prompt fields and bring them to the image's pixel coordinates."""
    width, height = params.image.size
    scale = np.array([1.0, 1.0]) if params.normalize_coords else np.array([width, height])
    bound = "the image" if params.normalize_coords else "[0, 1] (normalize_coords is false)"

    def inside(name: str, xy: np.ndarray) -> None:
        pixels = xy * scale
        if (pixels < 0).any() or (pixels[..., 0] > width).any() or (pixels[..., 1] > height).any():
            raise InvalidInput(f"{name} has coordinates outside {bound} ({width}x{height}).")

    points = labels = box = mask = None
    raw_points = _json_field("point_coords", params.point_coords)
    raw_labels = _json_field("point_labels", params.point_labels)
    if raw_points is not None:
        if isinstance(raw_points, list) and len(raw_points) > max_points:
            raise InvalidInput(
                f"point_coords: at most {max_points} points (MAX_PROMPT_POINTS), "
                f"got {len(raw_points)}."
            )
        array = _numbers("point_coords", raw_points, "an Nx2 list")
        if array.ndim != 2 or array.shape[1] != 2 or not len(array):
            raise InvalidInput("point_coords must be a non-empty Nx2 list of [x, y] points.")
        inside("point_coords", array)
        points = (array * scale).tolist()
        if raw_labels is None:
            raise InvalidInput("point_labels is required with point_coords.")
        label_array = _numbers("point_labels", raw_labels, "a list")
        if label_array.shape != (len(points),):
            raise InvalidInput(
                f"point_labels must hold one label per point: {len(points)} points, "
                f"{label_array.size} labels."
            )
        if not np.isin(label_array, (0, 1)).all():
            raise InvalidInput("point_labels must be 1 (foreground) or 0 (background).")
        labels = label_array.astype(int).tolist()
    elif raw_labels is not None:
        raise InvalidInput("point_labels was given without point_coords.")
    raw_box = _json_field("box", params.box)
    if raw_box is not None:
        array = _numbers("box", raw_box, "a list of four")
        if array.shape != (4,):
            raise InvalidInput("box must be four numbers: [x0, y0, x1, y1].")
        inside("box", array.reshape(2, 2))
        if array[2] < array[0] or array[3] < array[1]:
            raise InvalidInput("box must have x1 >= x0 and y1 >= y0.")
        box = (array.reshape(2, 2) * scale).reshape(4).tolist()
    raw_mask = _json_field("mask_input", params.mask_input)
    if raw_mask is not None:
        mask = _numbers("mask_input", raw_mask, "a 1x256x256 list", np.float32)
        if mask.shape != (1, MASK_INPUT_SIDE, MASK_INPUT_SIDE):
            raise InvalidInput(
                f"mask_input must be 1x256x256, got {'x'.join(map(str, mask.shape))}."
            )
    if points is None and box is None and mask is None:
        raise InvalidInput("give at least one prompt: point_coords, box or mask_input.")
    return Prompts(points, labels, box, mask)


@dataclass(frozen=True)
class SegmentationRequest:
    """A request as ``predict`` takes it: its prompts parsed once, by ``check``."""

    params: SegmentAnything2Params
    prompts: Prompts


@dataclass(frozen=True)
class Sam2Source:
    """The snapshot SAM 2 loads from: in transformers' format, or Meta's checkpoint."""

    repo: str
    path: Path
    meta: MetaCheckpoint | None  # Meta's checkpoint, converted at load


def locate_sam2(model_dir: Path, model_id: str) -> Sam2Source:
    """``model_id`` itself, in transformers' format or as Meta's checkpoint (what ai-runner's
    download script fetches for facebook/sam2-hiera-large), else its transformers conversion
    ``<model_id>-hf`` (facebook/sam2-hiera-large-hf)."""
    converted = f"{model_id}-hf"
    try:
        path = locate_model(model_dir, model_id)
    except ModelNotFound:
        pass
    else:
        if (path / "config.json").exists():
            return Sam2Source(model_id, path, None)
        meta = find_meta_checkpoint(path)
        if meta is not None:
            return Sam2Source(model_id, path, meta)
    try:
        return Sam2Source(converted, locate_model(model_dir, converted), None)
    except ModelNotFound:
        raise ModelNotFound(
            f"neither {model_id} (Meta's checkpoint, or transformers' format) nor its "
            f"conversion {converted} is in MODEL_DIR={model_dir}; download it first with "
            f"`hf download {model_id} --include '*.pt' --include '*.yaml' --cache-dir "
            f"{model_dir}`"
        ) from None


class SegmentAnything2(Pipeline[SegmentAnything2Params, SegmentationRequest, Segmentation]):
    route = Route(
        path="/segment-anything-2",
        operation_id="genSegmentAnything2",
        summary="Segment Anything 2",
        description="Segment objects in an image.",
        params=SegmentAnything2Params,
        response=MasksResponse,
        sdk_name="segmentAnything2",
        example={"point_coords": "[[256, 256]]", "point_labels": "[1]"},
    )

    model: Any = None
    processor: Any = None
    origin = ""  # " from Meta's <checkpoint>" when converted at load

    def load(self) -> None:
        from transformers import Sam2ImageProcessor, Sam2Model, Sam2Processor

        source = locate_sam2(self.settings.model_dir, self.model_id)
        repo, path = source.repo, source.path
        files = prepare_model(self.settings, repo, path)
        self.device, self.placement, self.repo = files.device, files.placement, repo
        shipped = ("processor_config.json", "preprocessor_config.json")
        if any((path / name).exists() for name in shipped):
            self.processor = Sam2Processor.from_pretrained(repo, **files.source)
        else:  # Meta's checkpoint and the -hf conversions: SAM 2's own preprocessing
            self.processor = Sam2Processor(image_processor=Sam2ImageProcessor())
        if source.meta is not None:
            model = load_meta_checkpoint(self.settings.model_dir, repo, path, source.meta)
            self.origin = f" from Meta's {source.meta.weights.name}"
            self.model = model.to(self.placement.dtype)
        else:
            self.model = Sam2Model.from_pretrained(repo, dtype=self.placement.dtype, **files.source)
        self.model.to(self.device).eval()

    def describe(self) -> str:
        loaded = self.origin or ("" if self.repo == self.model_id else f" from {self.repo}")
        return f"{self.model_id}{loaded} ({type(self.model).__name__}, {self.placement.describe()})"

    def warmup(self) -> None:
        image = Image.new("RGB", (1024, 1024))
        params = SegmentAnything2Params(
            image=image, point_coords="[[512, 512]]", point_labels="[1]"
        )
        self.predict(SegmentationRequest(params, parse_prompts(params, 1)))

    def check(self, params: SegmentAnything2Params) -> SegmentationRequest:
        width, height = params.image.size
        limit = self.settings.max_mask_pixels
        if width * height > limit:
            raise InvalidInput(
                f"image is {width}x{height} pixels; segment-anything-2 answers masks of the "
                f"image's size, for images of at most {limit} pixels (MAX_MASK_PIXELS)."
            )
        return SegmentationRequest(params, parse_prompts(params, self.settings.max_prompt_points))

    def predict(self, request: SegmentationRequest) -> Segmentation:
        import torch

        params, prompts = request.params, request.prompts
        width, height = params.image.size
        image_processor = self.processor.image_processor
        image = processor_input(params.image, image_processor)  # SAM 2 takes a square
        pixels = image_processor(images=image, return_tensors="pt")["pixel_values"]
        pixels = pixels.to(self.device, self.placement.dtype)
        # The prompts are in the uploaded image's pixels: normalised against its own size.
        inputs = self.processor(
            original_sizes=[[height, width]],
            input_points=[[prompts.points]] if prompts.points else None,
            input_labels=[[prompts.labels]] if prompts.labels else None,
            input_boxes=[[prompts.box]] if prompts.box else None,
            return_tensors="pt",
        ).to(self.device)
        extra = {}
        if prompts.mask is not None:
            extra["input_masks"] = torch.from_numpy(prompts.mask)[None].to(self.device)
        original_sizes = inputs.pop("original_sizes")
        with torch.inference_mode():
            output = self.model(
                pixel_values=pixels,
                multimask_output=params.multimask_output,
                **inputs,
                **extra,
            )
        low_res = output.pred_masks[0, 0].float()  # (N, 256, 256)
        scores = output.iou_scores[0, 0].float().cpu().numpy()
        masks = self.processor.post_process_masks(
            output.pred_masks.float().cpu(), original_sizes.cpu(), binarize=not params.return_logits
        )[0][0].numpy()
        order = np.argsort(-scores, kind="stable")
        return Segmentation(
            masks=masks[order] if params.return_logits else masks[order].astype(np.uint8),
            scores=scores[order],
            logits=low_res.cpu().numpy()[order],
        )

    def encode(self, output: Segmentation) -> MasksResponse:

        def dumps(array: np.ndarray) -> str:
            if array.dtype.kind == "f":  # full-size float masks run to megabytes
                array = array.astype(np.float32).round(LOGIT_DECIMALS)
            return json_in_pieces(np.ascontiguousarray(array))

        return MasksResponse(
            masks=dumps(output.masks), scores=dumps(output.scores), logits=dumps(output.logits)
        )


# Elements orjson writes in one call: orjson holds the GIL for a whole call, and the masks of
# a large image run to millions of numbers (150 ms and more in one call); between calls the
# event loop gets its turn, so /health keeps answering.
JSON_PIECE = 65_536


def json_in_pieces(array: np.ndarray) -> str:
    """``orjson.dumps(array)`` as text, written in pieces of at most ``JSON_PIECE`` elements
    (the same text)."""
    import orjson

    option = orjson.OPT_SERIALIZE_NUMPY
    if array.size <= JSON_PIECE or array.ndim == 1:
        return orjson.dumps(array, option=option).decode()
    if array.ndim > 2:
        return "[" + ",".join(json_in_pieces(part) for part in array) + "]"
    rows = max(1, JSON_PIECE // max(1, array.shape[1]))
    pieces = (
        orjson.dumps(array[start : start + rows], option=option).decode()[1:-1]
        for start in range(0, len(array), rows)
    )
    return "[" + ",".join(pieces) + "]"
