"""Images, loaded and resized the Qwen way, so training, evaluation and a vLLM server see the same image tokens.

`qwen_resize` uses `qwen_vl_utils.fetch_image`: both sides a multiple of 28 (patch 14 x merge 2) and the pixel
count within [min_pixels, max_pixels]. An image resized this way is left unchanged by a Qwen2.5-VL processor (or a
vLLM server) configured with the same bounds. `processor_pixel_bounds` reads a processor's bounds, which training and
evaluation use when the recipe sets none.
"""

from __future__ import annotations

import io
import os
from typing import Any

from PIL import Image


class ImageError(ValueError):
    """An image that cannot be read; the message names the value or file."""


def load_image(value: Any, base_dir: str | None = None) -> Image.Image:
    """A PIL image (RGB) from a PIL image, a file path (relative to `base_dir`), raw bytes, or a
    `{"bytes": ..., "path": ...}` dict as `datasets` stores images."""
    if isinstance(value, Image.Image):
        image = value
    elif isinstance(value, dict) and (value.get("bytes") or value.get("path")):
        return load_image(value.get("bytes") or value.get("path"), base_dir)
    elif isinstance(value, (bytes, bytearray)):
        try:
            image = Image.open(io.BytesIO(value))
            image.load()
        except Exception as error:
            raise ImageError(f"Cannot decode image bytes: {error}") from None
    elif isinstance(value, str):
        path = value[7:] if value.startswith("file://") else value
        if base_dir and not os.path.isabs(path):
            path = os.path.join(base_dir, path)
        try:
            image = Image.open(path)
            image.load()
        except FileNotFoundError:
            raise ImageError(f"Image file not found: {path}") from None
        except Exception as error:
            raise ImageError(f"Cannot read image {path}: {error}") from None
    else:
        raise ImageError(f"Cannot read an image from a value of type {type(value).__name__}.")
    if image.mode == "RGBA":
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=image.split()[3])
        return background
    return image.convert("RGB") if image.mode != "RGB" else image


def qwen_resize(image: Image.Image, min_pixels: int | None = None, max_pixels: int | None = None) -> Image.Image:
    """Resize like Qwen2.5-VL: sides multiples of 28, pixels within [min_pixels, max_pixels] (Qwen's defaults if
    None: 4 and 16384 merged patches)."""
    from qwen_vl_utils import fetch_image  # imported when an image is resized (start-up time: it imports torch)

    element: dict[str, Any] = {"image": image}
    if min_pixels is not None:
        element["min_pixels"] = min_pixels
    if max_pixels is not None:
        element["max_pixels"] = max_pixels
    return fetch_image(element)



def processor_pixel_bounds(processor) -> tuple[int | None, int | None]:
    """(min_pixels, max_pixels) that the processor resizes images to: a trained checkpoint's saved processor keeps
    its recipe's bounds, which the evaluation must then use too (the model saw images of those sizes)."""
    size = getattr(getattr(processor, "image_processor", None), "size", None)
    if size is None:
        return None, None

    def read(key):
        value = size.get(key) if isinstance(size, dict) else getattr(size, key, None)
        return int(value) if value else None

    return read("shortest_edge"), read("longest_edge")
