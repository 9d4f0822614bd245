"""A tiny Qwen2.5-VL (model, byte-level tokenizer and processor) built offline in about a second.

Tests and the embedded default recipe use it instead of a download. The architecture, special tokens, chat template
and processor classes are the real Qwen2.5-VL ones; only the sizes are tiny and the weights random (seeded).

Example:

```python
>>> from self_evolve_trl.data.tiny_model import build_tiny_qwen25vl
>>> path = build_tiny_qwen25vl("/tmp/tiny-qwen")  # doctest: +SKIP
>>> # then: model_name_or_path: /tmp/tiny-qwen   (or the special name "tiny:qwen2.5-vl" in a recipe, `tiny.py`)
```
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .images import QWEN25_VL_PATCH_SIZE, merged_patch

# The stock Qwen2-VL / Qwen2.5-VL chat template (default system prompt, image parts as vision tokens).
QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# Pre-tokens (as the Qwen2 pre-tokenizer splits text) that get a single token each, so that a tiny model can learn
# the output format in few steps.
MERGED_WORDS = ["<think", "think", "</", " <", "\\boxed", "boxed", " \\", "answer", " the", " is", "\n\n"]

# name -> (text config, vision config). `sum(mrope_section) == head_dim // 2`; vision out size == text hidden size.
PRESETS = {
    # The default: fast on CPU (hidden 64, 2 layers, vision depth 2).
    "tiny": (
        dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             mrope_section=[2, 3, 3]),
        dict(hidden_size=32, intermediate_size=64, num_heads=2, depth=2),
    ),
    # Head sizes that vLLM's attention backends accept (head_dim 64), for a tiny model served by vLLM on a GPU.
    "vllm": (
        dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
             mrope_section=[8, 12, 12]),
        dict(hidden_size=64, intermediate_size=128, num_heads=1, depth=2),
    ),
}

# Image bounds for the tiny processor: 4 to 64 merged patches of 28x28 pixels (56x56 to 224x224).
TINY_MIN_PIXELS = merged_patch(QWEN25_VL_PATCH_SIZE) ** 2 * 4
TINY_MAX_PIXELS = merged_patch(QWEN25_VL_PATCH_SIZE) ** 2 * 64


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable-character map used by byte-level BPE."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def build_tiny_tokenizer():
    """A byte-level BPE `Qwen2Tokenizer` with the Qwen special tokens and the Qwen2-VL chat template."""
    from transformers import Qwen2Tokenizer  # imported when a model is built: `tiny.cache_dir` stays light

    byte_map = _bytes_to_unicode()
    vocab = {symbol: i for i, symbol in enumerate(byte_map.values())}
    merges = []
    for word in MERGED_WORDS:
        symbols = [byte_map[b] for b in word.encode("utf-8")]
        current = symbols[0]
        for symbol in symbols[1:]:
            merged = current + symbol
            if merged not in vocab:
                merges.append((current, symbol))
                vocab[merged] = len(vocab)
            current = merged
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens={
            "image_token": "<|image_pad|>",
            "video_token": "<|video_pad|>",
            "vision_bos_token": "<|vision_start|>",
            "vision_eos_token": "<|vision_end|>",
        },
    )
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS})
    tokenizer.chat_template = QWEN2_VL_CHAT_TEMPLATE
    return tokenizer


def build_tiny_processor(tokenizer=None, min_pixels: int = TINY_MIN_PIXELS, max_pixels: int = TINY_MAX_PIXELS):
    """The real `Qwen2_5_VLProcessor` around the tiny tokenizer (needs torchvision for its video processor)."""
    from transformers import Qwen2_5_VLProcessor  # imported when a model is built (start-up time)
    from transformers.models.qwen2_vl import Qwen2VLImageProcessorPil, Qwen2VLVideoProcessor

    tokenizer = tokenizer or build_tiny_tokenizer()
    image_processor = Qwen2VLImageProcessorPil(
        min_pixels=min_pixels, max_pixels=max_pixels, patch_size=QWEN25_VL_PATCH_SIZE, temporal_patch_size=2,
        merge_size=2,
    )
    return Qwen2_5_VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=QWEN2_VL_CHAT_TEMPLATE,
    )


def build_tiny_model(tokenizer, preset: str = "tiny", seed: int = 0):
    """A randomly initialised (seeded) `Qwen2_5_VLForConditionalGeneration` sized by `preset`."""
    import torch  # torch and transformers: imported when a model is built (start-up time)
    from transformers import GenerationConfig, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    if preset not in PRESETS:
        raise ValueError(f"Unknown tiny preset {preset!r}; choose one of {sorted(PRESETS)}.")
    text, vision = PRESETS[preset]
    text = dict(text)
    mrope_section = text.pop("mrope_section")
    ids = {name: tokenizer.convert_tokens_to_ids(token) for name, token in [
        ("image_token_id", "<|image_pad|>"),
        ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"),
        ("vision_end_token_id", "<|vision_end|>"),
    ]}
    vocab_size = (len(tokenizer) + 63) // 64 * 64
    eos_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    pad_id = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=vocab_size,
            max_position_embeddings=4096,
            rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": mrope_section},
            bos_token_id=pad_id,
            eos_token_id=eos_id,
            pad_token_id=pad_id,
            **text,
        ),
        vision_config=dict(
            out_hidden_size=text["hidden_size"],
            patch_size=QWEN25_VL_PATCH_SIZE,
            spatial_merge_size=2,
            temporal_patch_size=2,
            window_size=112,
            fullatt_block_indexes=[vision["depth"] - 1],
            **vision,
        ),
        tie_word_embeddings=False,
        **ids,
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        bos_token_id=pad_id, eos_token_id=[eos_id, pad_id], pad_token_id=pad_id, do_sample=True, temperature=1.0
    )
    return model


def build_tiny_qwen25vl(output_dir: str | os.PathLike, preset: str = "tiny", seed: int = 0) -> str:
    """Build and save a tiny Qwen2.5-VL (model + processor) to `output_dir`; reuse it if already built there.

    Returns the directory, loadable with `AutoModelForImageTextToText.from_pretrained` and
    `AutoProcessor.from_pretrained` without network access.
    """
    output_dir = Path(output_dir)
    marker = output_dir / "tiny_model.json"
    spec = {"preset": preset, "seed": seed, "builder_version": 1}
    if marker.exists() and json.loads(marker.read_text()) == spec:
        return str(output_dir)
    tokenizer = build_tiny_tokenizer()
    processor = build_tiny_processor(tokenizer)
    model = build_tiny_model(tokenizer, preset=preset, seed=seed)
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir)
    processor.save_pretrained(output_dir)
    marker.write_text(json.dumps(spec))
    return str(output_dir)
