"""A tiny text-only Qwen2 causal LM (model and tokenizer, no vision tower, no image processor) built offline.

Tests of text-only models use it as `tiny:qwen2-text` (`tiny.py`): the architecture is the real `Qwen2ForCausalLM`
(the one of Qwen2.5 and Qwen2.5-Math), the tokenizer is the tiny byte-level one of `tiny_model.py`, and the chat
template is Qwen2.5's text template (a message's content is a string), so a prompt that is not plain text shows up.

Example:

```python
>>> from self_evolve_trl.data.tiny_text import build_tiny_qwen2_text
>>> path = build_tiny_qwen2_text("/tmp/tiny-qwen2-text")  # doctest: +SKIP
>>> # then: model_name_or_path: /tmp/tiny-qwen2-text   (or "tiny:qwen2-text" in a recipe)
```
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .tiny_model import build_tiny_tokenizer

# Qwen2.5's chat template without tools: a default system prompt, then each message's (string) content.
QWEN2_TEXT_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

TEXT_CONFIG = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2)


def build_tiny_text_tokenizer():
    """The tiny byte-level tokenizer of `tiny_model.py` with Qwen2.5's text chat template."""
    tokenizer = build_tiny_tokenizer()
    tokenizer.chat_template = QWEN2_TEXT_CHAT_TEMPLATE
    return tokenizer


def build_tiny_text_model(tokenizer, seed: int = 0):
    """A randomly initialised (seeded) `Qwen2ForCausalLM` of `TEXT_CONFIG`'s sizes."""
    import torch  # torch and transformers: imported when a model is built (start-up time)
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    eos_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    pad_id = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = Qwen2Config(
        vocab_size=(len(tokenizer) + 63) // 64 * 64,
        max_position_embeddings=4096,
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
        bos_token_id=None,  # as the tokenizer's (Qwen2.5 has none)
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        tie_word_embeddings=False,
        **TEXT_CONFIG,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=None, eos_token_id=[eos_id, pad_id], pad_token_id=pad_id, do_sample=True, temperature=1.0
    )
    return model


def build_tiny_qwen2_text(output_dir: str | os.PathLike, seed: int = 0) -> str:
    """Build and save the tiny text-only Qwen2 (model + tokenizer) to `output_dir`; reuse it if already built there.

    Returns the directory, loadable with `AutoModelForCausalLM.from_pretrained` and `AutoTokenizer.from_pretrained`
    (or `AutoProcessor`, which then returns the tokenizer) without network access.
    """
    output_dir = Path(output_dir)
    marker = output_dir / "tiny_model.json"
    spec = {"architecture": "qwen2-text", "seed": seed, "builder_version": 1}
    if marker.exists() and json.loads(marker.read_text()) == spec:
        return str(output_dir)
    tokenizer = build_tiny_text_tokenizer()
    model = build_tiny_text_model(tokenizer, seed=seed)
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    marker.write_text(json.dumps(spec))
    return str(output_dir)
