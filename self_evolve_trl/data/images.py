"""Images, loaded and resized the Qwen way, so training, evaluation and a vLLM server see the same image tokens.

`qwen_resize` uses `qwen_vl_utils.fetch_image`: both sides a multiple of one merged patch (2x2 patches) and the
pixel count within [min_pixels, max_pixels]. An image resized this way is left unchanged by the model's processor (or
a vLLM server) configured with the same bounds. `processor_pixel_bounds` reads a processor's bounds, which training
and evaluation use when the recipe sets none.

Model families: the one place where they differ is the patch size, which `processor_patch_size` reads from the
model's own processor (training and evaluation pass it to `qwen_resize`):

| family | patch | merged patch (resize unit) | default bounds (merged patches) |
|---|---|---|---|
| Qwen2-VL, Qwen2.5-VL | 14 | 28x28 pixels | 4 to 16384 |
| Qwen3-VL | 16 | 32x32 pixels | the processor's own (read from the checkpoint) |

The same number of pixels is fewer image tokens for Qwen3-VL (32² pixels a token instead of 28²); a recipe's
`min_pixels`/`max_pixels` are pixel counts, so give a Qwen3-VL recipe bounds in 32x32 units. (The chat templates need
no code of their own: the processor's template renders every prompt. Qwen3-VL's `<think>`/`</think>` tokens are kept
by CSRS's decoding, `csrs/prefix.py`.)
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


QWEN25_VL_PATCH_SIZE = 14  # Qwen2-VL and Qwen2.5-VL: 28x28-pixel merged patches
QWEN3_VL_PATCH_SIZE = 16  # Qwen3-VL: 32x32-pixel merged patches
MERGE_SIZE = 2  # every family merges 2x2 patches into one image token


def merged_patch(patch_size: int) -> int:
    """The side in pixels of one image token, the unit of a resized image's sides.

    Example:

    ```python
    >>> merged_patch(QWEN25_VL_PATCH_SIZE), merged_patch(QWEN3_VL_PATCH_SIZE)
    (28, 32)

    ```
    """
    return patch_size * MERGE_SIZE


def qwen_resize(image: Image.Image, min_pixels: int | None = None, max_pixels: int | None = None,
                patch_size: int = QWEN25_VL_PATCH_SIZE) -> Image.Image:
    """Resize the Qwen way: sides multiples of `merged_patch(patch_size)` (28 for Qwen2.5-VL, 32 for Qwen3-VL),
    pixels within [min_pixels, max_pixels] (Qwen's defaults if None: 4 and 16384 merged patches)."""
    from qwen_vl_utils import fetch_image  # imported when an image is resized (start-up time: it imports torch)

    element: dict[str, Any] = {"image": image}
    if min_pixels is not None:
        element["min_pixels"] = min_pixels
    if max_pixels is not None:
        element["max_pixels"] = max_pixels
    return fetch_image(element, image_patch_size=patch_size)


def processor_patch_size(processor) -> int:
    """The patch size of a processor's image processor (16 for Qwen3-VL), 14 (Qwen2.5-VL's) where it has none."""
    patch_size = getattr(getattr(processor, "image_processor", None), "patch_size", None)
    return int(patch_size) if patch_size else QWEN25_VL_PATCH_SIZE


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
