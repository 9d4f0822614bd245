"""Generation backends: transformers `generate` (anywhere, CPU included, batched) and vLLM's offline engine (GPU).

Both take the same chat-formatted prompts (the processor's chat template, as in training) and Qwen-resized images,
and return the decoded completions. A model path may be a hub id, a full checkpoint or a LoRA adapter folder
(`adapter_config.json`): the adapter is loaded onto its base model with peft and merged for generation
(transformers), or served as a LoRA request (vLLM).

The vLLM backend is a thin wrapper over `vllm.LLM.generate`; vLLM needs a GPU and its own environment
(`pip install -e ".[vllm]"`), so the project's CPU tests check only what the wrapper hands to vLLM (through a
stand-in of vLLM's classes), never vLLM itself.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from .benchmarks import EvalError


@dataclass(frozen=True)
class ModelSource:
    """What `--model` points to: the weights to load and, for a LoRA adapter, the adapter folder."""

    model: str  # base model (hub id or folder)
    adapter: str | None = None
    processor: str | None = None  # where the processor is read from

    @property
    def name(self) -> str:
        return os.path.basename(os.path.normpath(self.adapter or self.model))


def resolve_model(path_or_id: str, base_model: str | None = None) -> ModelSource:
    """Tell a LoRA adapter folder (has `adapter_config.json`) from a full model; find the adapter's base model."""
    if os.path.isdir(path_or_id) and os.path.isfile(os.path.join(path_or_id, "adapter_config.json")):
        with open(os.path.join(path_or_id, "adapter_config.json")) as f:
            config = json.load(f)
        base = base_model or config.get("base_model_name_or_path")
        if not base:
            raise EvalError(
                f"LoRA adapter {path_or_id} does not name its base model (base_model_name_or_path); pass --base-model."
            )
        has_processor = any(
            os.path.isfile(os.path.join(path_or_id, name))
            for name in ("preprocessor_config.json", "processor_config.json", "tokenizer_config.json")
        )
        return ModelSource(model=base, adapter=path_or_id, processor=path_or_id if has_processor else base)
    if path_or_id.startswith("tiny:"):  # the offline tiny Qwen2.5-VL of the tests and the CPU recipe
        from ..cli import cache_dir
        from ..tiny import resolve_tiny_model

        try:
            path = resolve_tiny_model(path_or_id, cache_dir())
        except ValueError as error:
            raise EvalError(str(error)) from None
        return ModelSource(model=path, processor=path)
    if path_or_id.startswith((".", "/", "~")) and not os.path.exists(os.path.expanduser(path_or_id)):
        raise EvalError(f"Model path not found: {path_or_id}")
    return ModelSource(model=path_or_id, processor=path_or_id)


def load_processor(source: ModelSource, min_pixels: int | None, max_pixels: int | None):
    from transformers import AutoProcessor

    kwargs = {"padding_side": "left"}
    if min_pixels is not None:
        kwargs["min_pixels"] = min_pixels
    if max_pixels is not None:
        kwargs["max_pixels"] = max_pixels
    try:
        return AutoProcessor.from_pretrained(source.processor, **kwargs)
    except (OSError, ValueError) as error:
        raise EvalError(f"Cannot load the processor of {source.processor!r}: {str(error).splitlines()[0]}") from None


VLLM_MAX_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # vLLM's `MaxLoRARanks`: no other value is accepted


def vllm_max_lora_rank(rank: int) -> int:
    """The smallest `max_lora_rank` vLLM accepts that holds an adapter of rank `rank`.

    Example:

    ```python
    >>> [vllm_max_lora_rank(r) for r in (4, 8, 12, 24, 300)]
    [8, 8, 16, 32, 320]

    ```
    """
    for allowed in VLLM_MAX_LORA_RANKS[1:]:
        if rank <= allowed:
            return allowed
    raise EvalError(f"vLLM serves LoRA adapters up to rank {VLLM_MAX_LORA_RANKS[-1]}; this one has rank {rank}: "
                    "use --backend transformers.")


def chat_text(processor, conversation: list[dict]) -> str:
    return processor.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)


class TransformersBackend:
    """Batched `model.generate` with transformers; greedy when `n == 1 and temperature == 0`."""

    name = "transformers"

    def __init__(self, source: ModelSource, processor, dtype: str = "auto", device: str = "auto"):
        import torch
        from transformers import AutoModelForImageTextToText

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if dtype == "auto":
            dtype = "bfloat16" if device.startswith("cuda") else "float32"
        self.device, self.dtype = device, dtype
        try:
            model = AutoModelForImageTextToText.from_pretrained(source.model, dtype=getattr(torch, dtype))
        except OSError as error:
            raise EvalError(f"Cannot load model {source.model!r}: {str(error).splitlines()[0]}") from None
        if source.adapter:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, source.adapter).merge_and_unload()
        self.model = model.to(device).eval()
        self.processor = processor
        self.calls = 0

    def generate(
        self,
        conversations: list[list[dict]],
        images: list[list],
        n: int = 1,
        temperature: float = 0.0,
        top_p: float = 1.0,
        max_new_tokens: int = 2048,
        seed: int = 0,
    ) -> list[list[str]]:
        """`n` completions per prompt (one list per prompt)."""
        import torch

        self.calls += 1
        texts = [chat_text(self.processor, c) for c in conversations]
        image_lists = [list(i) for i in images]
        inputs = self.processor(
            text=texts, images=image_lists if any(image_lists) else None, padding=True, return_tensors="pt"
        ).to(self.device)
        sample = temperature > 0
        kwargs = dict(max_new_tokens=max_new_tokens, do_sample=sample, num_return_sequences=n)
        if sample:
            kwargs.update(temperature=temperature, top_p=top_p, top_k=0)
            torch.manual_seed(seed)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        with torch.inference_mode():
            output = self.model.generate(**inputs, **kwargs)
        completions = self.processor.batch_decode(output[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        return [completions[i * n : (i + 1) * n] for i in range(len(conversations))]


class VLLMBackend:
    """vLLM's offline engine (`vllm.LLM`). GPU only; not exercised by the CPU test-suite."""

    name = "vllm"

    def __init__(
        self,
        source: ModelSource,
        processor,
        dtype: str = "auto",
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.85,
        max_model_len: int | None = None,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        max_images: int = 4,
        seed: int = 0,
    ):
        try:
            from vllm import LLM
            from vllm.lora.request import LoRARequest
        except ImportError:
            raise EvalError(
                "--backend vllm needs vLLM (a GPU environment: pip install -e '.[vllm]'); use --backend transformers."
            ) from None
        kwargs = dict(
            model=source.model, dtype=dtype, tensor_parallel_size=tensor_parallel_size, seed=seed,
            gpu_memory_utilization=gpu_memory_utilization, limit_mm_per_prompt={"image": max_images},
            mm_processor_kwargs={k: v for k, v in (("min_pixels", min_pixels), ("max_pixels", max_pixels)) if v},
        )
        if max_model_len:
            kwargs["max_model_len"] = max_model_len
        self.lora = None
        if source.adapter:
            with open(os.path.join(source.adapter, "adapter_config.json")) as f:
                rank = json.load(f).get("r", 16)
            kwargs.update(enable_lora=True, max_lora_rank=vllm_max_lora_rank(rank))
            self.lora = LoRARequest("adapter", 1, source.adapter)
        self.llm = LLM(**kwargs)
        self.processor = processor
        self.calls = 0

    def generate(self, conversations, images, n=1, temperature=0.0, top_p=1.0, max_new_tokens=2048, seed=0):
        from vllm import SamplingParams

        self.calls += 1
        params = SamplingParams(
            n=n, temperature=temperature, top_p=top_p if temperature > 0 else 1.0, max_tokens=max_new_tokens,
            seed=seed if temperature > 0 else None,
        )
        requests = []
        for conversation, image_list in zip(conversations, images):
            request = {"prompt": chat_text(self.processor, conversation)}
            if image_list:
                request["multi_modal_data"] = {"image": list(image_list)}
            requests.append(request)
        outputs = self.llm.generate(requests, params, lora_request=self.lora, use_tqdm=False)
        return [[completion.text for completion in output.outputs] for output in outputs]


BACKENDS = ("transformers", "vllm")
