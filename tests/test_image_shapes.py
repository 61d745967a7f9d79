"""Resizing uploads with work bounded by their shape (pipelines/image_shapes.py)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from PIL import Image

from pipelines.image_shapes import center_square, resize

MEMORY_LIMIT = 1024**3  # address space for the child; one Pillow resize of 1x40,000,000 fails


def test_thin_images_resize_within_bounded_memory():
    """Issue 13, finding 13: thin uploads inside MAX_IMAGE_PIXELS cost gigabytes to resize
    (one Pillow resize of 1x40,000,000 to 384x384 holds 1.3 GB of filter weights)."""
    script = textwrap.dedent(
        f"""
        import resource
        resource.setrlimit(resource.RLIMIT_AS, ({MEMORY_LIMIT}, {MEMORY_LIMIT}))
        from PIL import Image
        from pipelines.image_shapes import resize
        for source, target in [((8, 5_000_000), (1024, 576)), ((1, 40_000_000), (384, 384))]:
            image = Image.new("RGB", source, (200, 30, 30))
            result = resize(image, target, Image.Resampling.BICUBIC)
            print(result.size, result.getpixel((5, 5)))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[:2] == ["(1024, 576) (200, 30, 30)", "(384, 384) (200, 30, 30)"]


def test_resize_of_an_ordinary_image_is_one_filter_pass():
    image = Image.linear_gradient("L").convert("RGB").resize((400, 300))
    expected = image.resize((120, 90), Image.Resampling.LANCZOS)
    assert resize(image, (120, 90)).tobytes() == expected.tobytes()
    assert resize(image, (400, 300)) is image


def test_center_square_is_what_a_shortest_side_crop_keeps():
    image = Image.new("RGB", (16, 65536))
    assert center_square(image).size == (16, 16)
    wide = Image.linear_gradient("L").resize((300, 100))
    assert center_square(wide).tobytes() == wide.crop((100, 0, 200, 100)).tobytes()
