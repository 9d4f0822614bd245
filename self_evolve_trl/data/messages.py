"""Reading TRL's prompts: a string, or the conversational form (a list of messages whose content is a string or a
list of `{"type": "text" | "image", ...}` parts). The judge, the completions table and the trainer's checks read
prompts through these."""

from __future__ import annotations

from typing import Any


def has_image_parts(prompt: Any) -> bool:
    """Whether a conversational prompt holds an image part (`build_prompt`'s, or TRL's with the image in it)."""
    return isinstance(prompt, list) and any(
        isinstance(part, dict) and part.get("type") == "image"
        for message in prompt if isinstance(message.get("content"), list) for part in message["content"]
    )


def prompt_text(prompt: Any) -> str:
    """The text of the user turn(s) of an actor prompt (a string, or TRL's conversational form)."""
    if isinstance(prompt, str):
        return prompt
    texts = []
    for message in prompt:
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts.extend(part.get("text", "") for part in content if part.get("type") == "text")
    return "\n".join(t for t in texts if t)


def prompt_images(prompt: Any) -> list[Any]:
    """The image objects embedded in a conversational prompt, in order."""
    if isinstance(prompt, str):
        return []
    images = []
    for message in prompt:
        content = message.get("content")
        if isinstance(content, list):
            images.extend(p["image"] for p in content if p.get("type") == "image" and p.get("image") is not None)
    return images
