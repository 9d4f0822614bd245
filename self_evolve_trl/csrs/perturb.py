"""VSP, CSRS's visual perturbation: Gaussian noise on the images of the re-inference prompts (only those).

The noise has σ = k·255/100 with k uniform in {1..max_level}, pixels clipped to [0, 255]. It comes from a numpy
Generator seeded by (seed, step, global completion index, anchor, generation batch), so it is reproducible and
survives a resume.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


# The seed component after the anchor: the provider's sampling seeds put `SAMPLING_STREAM` (1) there, so the noise and
# the sampling streams never share a seed.
NOISE_STREAM = 0


def noise_generator(
    seed: int, step: int, index: int, anchor: int, batch: tuple[int, ...] = ()
) -> np.random.Generator:
    """The noise generator of one re-inference prompt: completion `index` (global), anchor number `anchor`, of the
    generation batch whose `seeds.batch_entropy` is `batch`."""
    return np.random.default_rng([seed, step, index, anchor, NOISE_STREAM, *batch])


def perturb_image(image: Image.Image, rng: np.random.Generator, max_level: int = 40) -> Image.Image:
    """A copy of `image` with Gaussian noise of σ = k·255/100, k uniform in {1..max_level}, clipped to [0, 255]."""
    return add_noise(image, rng, noise_level(rng, max_level))


def noise_level(rng: np.random.Generator, max_level: int = 40) -> int:
    """The noise level k of one perturbation, uniform in {1..max_level}."""
    return int(rng.integers(1, max_level + 1))


def add_noise(image: Image.Image, rng: np.random.Generator, level: int) -> Image.Image:
    """A copy of `image` with Gaussian noise of σ = level·255/100, clipped to [0, 255]."""
    if image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    pixels = np.asarray(image, dtype=np.float32)
    noisy = pixels + rng.normal(0.0, level * 255 / 100, size=pixels.shape)
    return Image.fromarray(np.clip(np.rint(noisy), 0, 255).astype(np.uint8), mode=image.mode)


def perturb_images(images: list[Image.Image], rng: np.random.Generator, max_level: int = 40) -> list[Image.Image]:
    """Every image of the list perturbed (the released code returned the clean list here)."""
    return [perturb_image(image, rng, max_level) for image in images]


def map_images(prompt: list[dict], function) -> list[dict]:
    """A copy of a conversational prompt with every embedded image replaced by `function(image)`.

    Example:

    ```python
    >>> prompt = [{"role": "user", "content": [{"type": "image", "image": "cat.png"}, {"type": "text", "text": "?"}]}]
    >>> map_images(prompt, str.upper)[0]["content"]
    [{'type': 'image', 'image': 'CAT.PNG'}, {'type': 'text', 'text': '?'}]

    ```
    """
    mapped = []
    for message in prompt:
        content = message.get("content")
        if isinstance(content, list):
            content = [
                {**part, "image": function(part["image"])}
                if isinstance(part, dict) and part.get("type") == "image" and part.get("image") is not None
                else part
                for part in content
            ]
        mapped.append({**message, "content": content})
    return mapped
