"""The configuration of an evaluation run (`EvalConfig`, whose fields are the flags of `python -m self_evolve_trl.eval`)
and its checks, made before any model or data is loaded (`check_config`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..data import LOCAL_EXTENSIONS
from .backends import BACKENDS
from .benchmarks import BENCHMARKS, Benchmark, EvalError, get_benchmark

DEFAULT_CHOICE_HINT = "For a multiple-choice question, the answer is the letter of the correct option."
DEFAULT_CHOICES_HINT = (
    "For a multiple-choice question, the answer is the letter(s) of the correct option(s), separated by commas."
)


def _field(default, help: str, **kwargs):
    if callable(default):
        return field(default_factory=default, metadata={"help": help}, **kwargs)
    return field(default=default, metadata={"help": help}, **kwargs)


@dataclass
class EvalConfig:
    r"""
    Configuration of an evaluation run (`python -m self_evolve_trl.eval`; each field is the flag of the same name
    with dashes).

    Parameters:
        > What to evaluate, on what

        model (`str`):
            Hub id, model folder (full checkpoint) or LoRA adapter folder (with `adapter_config.json`).
        benchmarks (`list[str]`):
            Registry names (`mathvision`, `mathverse`, `wemath`, `logicvista`, `dynamath`, `geo3k`, `geoqa`).
        output_dir (`str`):
            Where results, predictions and the generation cache go.
        base_model (`str`, *optional*):
            Base model of a LoRA adapter (default: the adapter's `base_model_name_or_path`).
        data (`dict[str, str]`, *optional*):
            Local copy per benchmark (file or folder); the hub otherwise.
        data_dir (`str`, *optional*):
            Folder of local copies named after the benchmarks; every benchmark not given by `data` must be there.
        splits (`dict[str, str]`, *optional*):
            Other splits per benchmark, comma-separated (e.g. `{"mathvision": "testmini"}`,
            `{"dynamath": "sample_variant1,sample_variant2"}`); a benchmark read from several splits needs all of
            them otherwise.
        metrics (`dict[str, str]`, *optional*):
            Primary metric per benchmark (e.g. `{"wemath": "score_loose"}`).
        limit (`int`, *optional*):
            First N questions per benchmark (DynaMath: seed questions; WeMath: composite problems).
        mathverse_version (`str`, *optional*, defaults to `"Vision Only"`):
            MathVerse `problem_version` to keep (`all` keeps the five versions).

        > The prompt

        instruction (`str`, *optional*):
            Instruction appended to every question (default: the training instruction,
            `data.DEFAULT_INSTRUCTION`).
        choice_hint (`str`, *optional*, defaults to `DEFAULT_CHOICE_HINT`):
            Sentence added to single-answer choice questions before the instruction (empty for none).
        choices_hint (`str`, *optional*, defaults to `DEFAULT_CHOICES_HINT`):
            Sentence added to questions answered by a set of letters (LogicVista) before the instruction (empty for
            none).
        min_pixels (`int`, *optional*):
            Lower bound on image pixels (Qwen resizing; also set on the processor).
        max_pixels (`int`, *optional*):
            Upper bound on image pixels.

        > Generation

        backend (`str`, *optional*, defaults to `"transformers"`):
            `transformers` (anywhere) or `vllm` (GPU, offline engine).
        max_new_tokens (`int`, *optional*, defaults to `2048`):
            Longest completion.
        batch_size (`int`, *optional*, defaults to `8`):
            Questions per generate call and per cache flush.
        samples (`int`, *optional*, defaults to `0`):
            Samples per question besides the greedy answer (sampled pass@1 and maj@k); 0 for greedy only.
        temperature (`float`, *optional*, defaults to `1.0`):
            Sampling temperature of the samples.
        top_p (`float`, *optional*, defaults to `1.0`):
            Sampling top-p of the samples.
        preflight (`bool`, *optional*, defaults to `False`):
            Also say whether label-free training is likely to help on this (labelled) data: greedy pass@1, maj@k,
            their gap, pass@k, the estimated pseudo-label accuracy and a verdict (`eval.preflight`); needs `samples`.
        top_k (`int`, *optional*):
            Sampling top-k of the samples (none by default: all tokens).
        repetition_penalty (`float`, *optional*, defaults to `1.0`):
            Repetition penalty of every generation, greedy included (1.0: none; the checkpoint's
            `generation_config.json` is not applied).
        seed (`int`, *optional*, defaults to `0`):
            Sampling seed; each question is sampled with a seed drawn from it and the question's id (vllm; the
            transformers backend seeds each batch with its first question's).
        dtype (`str`, *optional*, defaults to `"auto"`):
            `auto` (transformers: bf16 on GPU, fp32 on CPU; vllm: vLLM's own choice, bf16 for a float32
            checkpoint; the resolved name keys the cache and is reported), `bfloat16`, `float16` or `float32`.
        device (`str`, *optional*, defaults to `"auto"`):
            transformers backend device: `auto`, `cpu`, `cuda`, `cuda:1`, ...
        tensor_parallel_size (`int`, *optional*, defaults to `1`):
            vllm backend: GPUs per model.
        gpu_memory_utilization (`float`, *optional*, defaults to `0.85`):
            vllm backend: share of GPU memory it may take.
        max_model_len (`int`, *optional*):
            vllm backend: longest prompt + completion.

        > Answers

        llm_extractor (`str`, *optional*):
            OpenAI-compatible model that reads the answers the rules cannot (off by default).
        llm_extractor_base_url (`str`, *optional*):
            Its endpoint, e.g. `http://localhost:8000/v1`.
        llm_extractor_api_key_env (`str`, *optional*, defaults to `"OPENAI_API_KEY"`):
            Environment variable holding its API key.
        progress (`bool`, *optional*, defaults to `True`):
            Show progress bars.
    """

    model: str = _field(None, "Hub id, model folder (full checkpoint) or LoRA adapter folder.")
    benchmarks: list[str] = _field(list, "Benchmarks to evaluate, by registry name.")
    output_dir: str = _field("eval_results", "Where results, predictions and the generation cache go.")
    base_model: str | None = _field(None, "Base model of a LoRA adapter (default: its adapter_config.json).")
    data: dict[str, str] = _field(dict, "Local copy per benchmark (file or folder); the hub otherwise.")
    data_dir: str | None = _field(None, "Folder of local copies named after the benchmarks (DIR/mathvision, ...).")
    splits: dict[str, str] = _field(dict, "Other splits per benchmark, comma-separated, e.g. mathvision=testmini.")
    metrics: dict[str, str] = _field(dict, "Primary metric per benchmark, e.g. wemath=score_loose.")
    limit: int | None = _field(None, "First N questions per benchmark (DynaMath/WeMath: groups).")
    mathverse_version: str = _field("Vision Only", "MathVerse problem_version to keep ('all' keeps the five).")
    instruction: str | None = _field(None, "Instruction appended to every question (default: the training one).")
    choice_hint: str = _field(DEFAULT_CHOICE_HINT, "Sentence added to choice questions ('' for none).")
    choices_hint: str = _field(DEFAULT_CHOICES_HINT, "Sentence added to letter-set questions ('' for none).")
    min_pixels: int | None = _field(None, "Qwen resize lower bound (pixels).")
    max_pixels: int | None = _field(None, "Qwen resize upper bound (pixels).")
    backend: str = _field("transformers", "transformers (anywhere) or vllm (GPU).")
    max_new_tokens: int = _field(2048, "Longest completion.")
    batch_size: int = _field(8, "Questions per generate call and per cache flush.")
    samples: int = _field(0, "Also draw k samples per question: sampled pass@1 and maj@k (k >= 2).")
    temperature: float = _field(1.0, "Sampling temperature (with samples).")
    top_p: float = _field(1.0, "Sampling top-p (with samples).")
    top_k: int | None = _field(None, "Sampling top-k (with samples; none by default).")
    preflight: bool = _field(False, "Also say whether label-free training is likely to help on this labelled data "
                                    "(maj@k, pass@k, pseudo-label accuracy, a verdict); needs --samples k.")
    repetition_penalty: float = _field(1.0, "Repetition penalty, greedy included (1.0: none).")
    seed: int = _field(0, "Sampling seed.")
    dtype: str = _field("auto", "auto (transformers: bf16 on GPU, fp32 on CPU; vllm: vLLM's "
                                 "choice), bfloat16, float16, float32.")
    device: str = _field("auto", "transformers backend: auto, cpu, cuda, cuda:1, ...")
    tensor_parallel_size: int = _field(1, "vllm backend: GPUs per model.")
    gpu_memory_utilization: float = _field(0.85, "vllm backend: share of GPU memory it may take.")
    max_model_len: int | None = _field(None, "vllm backend: longest prompt + completion.")
    llm_extractor: str | None = _field(None, "OpenAI-compatible model that reads answers the rules cannot (off).")
    llm_extractor_base_url: str | None = _field(None, "Its endpoint, e.g. http://localhost:8000/v1.")
    llm_extractor_api_key_env: str = _field("OPENAI_API_KEY", "Environment variable holding its API key.")
    progress: bool = _field(True, "Show progress bars.")


def help_of(name: str) -> str:
    """The help text of an `EvalConfig` field (the CLI's flags use them)."""
    return EvalConfig.__dataclass_fields__[name].metadata["help"]


def resolve_data_path(config: EvalConfig, name: str) -> str | None:
    """The local copy of benchmark `name`: given by `--data`, or found in `--data-dir`; None for the hub."""
    if name in config.data:
        return config.data[name]
    if config.data_dir:
        candidate = os.path.join(config.data_dir, name)
        if os.path.exists(candidate):
            return candidate
        for ext in LOCAL_EXTENSIONS:
            if os.path.exists(candidate + ext):
                return candidate + ext
    return None


def check_config(config: EvalConfig) -> list[Benchmark]:
    """Validate names and options before anything heavy is loaded; returns the benchmarks."""
    if not config.model:
        raise EvalError("No model given: a hub id, a model folder or a LoRA adapter folder.")
    benchmarks = [get_benchmark(name) for name in config.benchmarks]
    if not benchmarks:
        raise EvalError("No benchmark given; valid benchmarks: " + ", ".join(BENCHMARKS) + ".")
    names = {b.name for b in benchmarks}
    for mapping, what in ((config.data, "--data"), (config.splits, "--split"), (config.metrics, "--metric")):
        for key in mapping:
            if get_benchmark(key).name not in names:
                raise EvalError(f"{what} names {key!r}, which is not among --benchmarks ({', '.join(sorted(names))}).")
    for key, metric in config.metrics.items():
        bench = get_benchmark(key)
        if metric not in bench.metrics:
            raise EvalError(f"Unknown metric {metric!r} for {bench.name}; valid metrics: {', '.join(bench.metrics)}.")
    if config.backend not in BACKENDS:
        raise EvalError(f"Unknown backend {config.backend!r}; valid backends: {', '.join(BACKENDS)}.")
    if config.samples < 0 or config.samples == 1:
        raise EvalError(f"--samples must be 0 (greedy only) or at least 2, got {config.samples}.")
    if config.preflight and not config.samples:
        raise EvalError("--preflight needs --samples k (the samples whose majority it scores), e.g. --samples 8.")
    if config.samples and config.temperature <= 0:
        raise EvalError("--samples needs --temperature > 0.")
    if config.limit is not None and config.limit < 1:
        raise EvalError(f"--limit must be at least 1, got {config.limit}.")
    if config.batch_size < 1:
        raise EvalError(f"--batch-size must be at least 1, got {config.batch_size}.")
    if config.repetition_penalty <= 0:
        raise EvalError(f"--repetition-penalty must be positive (1.0: none), got {config.repetition_penalty}.")
    if config.top_k is not None and config.top_k < 1:
        raise EvalError(f"--top-k must be at least 1 (leave it out for none), got {config.top_k}.")
    check_data(config, benchmarks)
    return benchmarks


def check_data(config: EvalConfig, benchmarks: list[Benchmark]) -> None:
    """The local copies exist: each `--data` path, the `--data-dir` folder and each benchmark's copy in it."""
    for path in config.data.values():
        if not os.path.exists(path):
            raise EvalError(f"Local data not found: {path}")
    if config.data_dir and not os.path.isdir(config.data_dir):
        raise EvalError(f"--data-dir is not a folder: {config.data_dir}")
    if config.data_dir:  # a local run stays local: no silent fall-back to the hub for what the folder lacks
        for bench in benchmarks:
            if resolve_data_path(config, bench.name) is None:
                looked = os.path.join(config.data_dir, bench.name)
                raise EvalError(
                    f"--data-dir {config.data_dir} has no copy of {bench.name}: looked for {looked} (a folder) and "
                    f"{looked}{{{','.join(LOCAL_EXTENSIONS)}}}; add it, or give it with --data {bench.name}=PATH."
                )
