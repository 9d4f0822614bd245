"""A tiny Qwen3-VL (model, byte-level tokenizer and processor) built offline, as `tiny:qwen3-vl` (`tiny.py`).

The architecture (`Qwen3VLForConditionalGeneration`: deepstack vision features, interleaved multimodal RoPE) and the
processor classes are the real Qwen3-VL ones; only the sizes are tiny and the weights random (seeded). What differs
from the tiny Qwen2.5-VL of `tiny_model.py`, whose tokenizer pieces it reuses:

- images are cut into 16x16-pixel patches, merged 2x2: the resize unit is 32 pixels, not 28 (`images.py` says where
  the code reads it);
- the chat template is Qwen3-VL-Instruct's: no default system prompt, and an assistant message may be a string or a
  list of text parts;
- `<think>` and `</think>` are single added tokens that are not special, as in the real Qwen3 tokenizer, so decoding
  with `skip_special_tokens=True` keeps them.

Example:

```python
>>> from self_evolve_trl.data.tiny_qwen3vl import build_tiny_qwen3vl
>>> path = build_tiny_qwen3vl("/tmp/tiny-qwen3-vl")  # doctest: +SKIP
>>> # then: model_name_or_path: /tmp/tiny-qwen3-vl   (or "tiny:qwen3-vl" in a recipe; "tiny:qwen3-vl-vllm" for vLLM)
```
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .images import QWEN3_VL_PATCH_SIZE, merged_patch
from .tiny_model import PRESETS, build_tiny_tokenizer

# Qwen3-VL-Instruct's chat template without tools: no default system prompt; an image part becomes the vision tokens,
# a text part its text, and a message's content may also be a plain string.
QWEN3_VL_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' or 'image' in part or 'image_url' in part %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'video' or 'video' in part %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in part %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

THINK_TOKENS = ("<think>", "</think>")

# Image bounds for the tiny processor: 4 to 64 merged patches of 32x32 pixels (64x64 to 256x256).
TINY_MIN_PIXELS = merged_patch(QWEN3_VL_PATCH_SIZE) ** 2 * 4
TINY_MAX_PIXELS = merged_patch(QWEN3_VL_PATCH_SIZE) ** 2 * 64

# Qwen3-VL's vision additions to a `tiny_model.PRESETS` vision size: the first block's features also go to the first
# text layer (deepstack); an 8x8 grid of learned position embeddings, interpolated to each image's patch grid.
VISION_EXTRAS = dict(deepstack_visual_indexes=[0], num_position_embeddings=64)


def build_tiny_qwen3vl_tokenizer():
    """The tiny byte-level tokenizer of `tiny_model.py` with `<think>`/`</think>` as added, non-special tokens and
    Qwen3-VL-Instruct's chat template."""
    from tokenizers import AddedToken  # imported when a model is built (start-up time)

    tokenizer = build_tiny_tokenizer()
    tokenizer.add_tokens([AddedToken(token, special=False, normalized=False) for token in THINK_TOKENS])
    tokenizer.chat_template = QWEN3_VL_CHAT_TEMPLATE
    return tokenizer


def build_tiny_qwen3vl_processor(tokenizer=None, min_pixels: int = TINY_MIN_PIXELS, max_pixels: int = TINY_MAX_PIXELS):
    """The real `Qwen3VLProcessor` (16-pixel patches, merged 2x2) around the tiny tokenizer."""
    from transformers import Qwen3VLProcessor  # imported when a model is built (start-up time)
    from transformers.models.qwen2_vl import Qwen2VLImageProcessorPil
    from transformers.models.qwen3_vl import Qwen3VLVideoProcessor

    tokenizer = tokenizer or build_tiny_qwen3vl_tokenizer()
    image_processor = Qwen2VLImageProcessorPil(
        min_pixels=min_pixels, max_pixels=max_pixels, patch_size=QWEN3_VL_PATCH_SIZE, temporal_patch_size=2,
        merge_size=2, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5],
    )
    return Qwen3VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                            video_processor=Qwen3VLVideoProcessor(), chat_template=QWEN3_VL_CHAT_TEMPLATE)


def build_tiny_qwen3vl_model(tokenizer, preset: str = "tiny", seed: int = 0):
    """A randomly initialised (seeded) `Qwen3VLForConditionalGeneration` with the sizes of the tiny Qwen2.5-VL's
    `preset` (`tiny_model.PRESETS`)."""
    import torch  # torch and transformers: imported when a model is built (start-up time)
    from transformers import GenerationConfig, Qwen3VLConfig, Qwen3VLForConditionalGeneration

    text, vision = PRESETS[preset]
    text = dict(text)
    mrope_section = text.pop("mrope_section")  # sums to head_dim // 2
    token = tokenizer.convert_tokens_to_ids
    eos_id, pad_id = token("<|im_end|>"), token("<|endoftext|>")
    config = Qwen3VLConfig(
        text_config=dict(
            vocab_size=(len(tokenizer) + 63) // 64 * 64,
            head_dim=text["hidden_size"] // text["num_attention_heads"],
            max_position_embeddings=4096,
            rope_parameters={"rope_type": "default", "rope_theta": 5_000_000.0, "mrope_section": mrope_section,
                             "mrope_interleaved": True},
            bos_token_id=None,
            eos_token_id=eos_id,
            pad_token_id=pad_id,
            **text,
        ),
        vision_config=dict(out_hidden_size=text["hidden_size"], patch_size=QWEN3_VL_PATCH_SIZE, spatial_merge_size=2,
                           temporal_patch_size=2, **vision, **VISION_EXTRAS),
        image_token_id=token("<|image_pad|>"),
        video_token_id=token("<|video_pad|>"),
        vision_start_token_id=token("<|vision_start|>"),
        vision_end_token_id=token("<|vision_end|>"),
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = Qwen3VLForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        bos_token_id=None, eos_token_id=[eos_id, pad_id], pad_token_id=pad_id, do_sample=True, temperature=1.0
    )
    return model


def build_tiny_qwen3vl(output_dir: str | os.PathLike, preset: str = "tiny", seed: int = 0) -> str:
    """Build and save the tiny Qwen3-VL (model + processor) of `preset`'s sizes to `output_dir`; reuse it if already
    built there. The `vllm` preset has the head size (64) that vLLM's attention accepts (`tiny:qwen3-vl-vllm`).

    Returns the directory, loadable with `AutoModelForImageTextToText.from_pretrained` and
    `AutoProcessor.from_pretrained` without network access.
    """
    output_dir = Path(output_dir)
    marker = output_dir / "tiny_model.json"
    spec = {"architecture": "qwen3-vl", "preset": preset, "seed": seed, "builder_version": 1}
    if marker.exists() and json.loads(marker.read_text()) == spec:
        return str(output_dir)
    tokenizer = build_tiny_qwen3vl_tokenizer()
    processor = build_tiny_qwen3vl_processor(tokenizer)
    model = build_tiny_qwen3vl_model(tokenizer, preset=preset, seed=seed)
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir)
    processor.save_pretrained(output_dir)
    marker.write_text(json.dumps(spec))
    return str(output_dir)
