"""The evaluation loop: prompts, generation in batches with a resumable cache, extraction, scoring, results.

Cache: `<output_dir>/samples/<benchmark>.jsonl`, one line per item and generation mode (greedy, or k samples),
keyed by the item id and a hash of everything that changes the outputs (model and its weights' fingerprint, how
an adapter is served, backend, dtype, instruction, hints, pixel bounds, splits, decoding settings); a line whose
question text differs (another copy of the data with the same ids) is not reused. Lines are appended and flushed
batch by batch, so an interrupted evaluation loses at most the batch in flight and resumes where it stopped; a run
with other settings adds its own lines beside them. Scoring is recomputed from the cached outputs on every run, so
changing the scoring rules never needs new generations.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from ..answers import MATCH_STATS, completion_text
from ..data import LOCAL_EXTENSIONS
from .benchmarks import BENCHMARKS, EvalError, EvalItem, LoadedBenchmark, get_benchmark, load_benchmark
from .extraction import RULES_DESCRIPTION, LLMExtractor, extract_by_rules
from .scoring import accuracy, dynamath_accuracy, mean_metrics, score_answer, score_samples, wemath_metrics


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
            `config.DEFAULT_INSTRUCTION`).
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


# ----------------------------------------------------------------------------------------------------------------
# Prompts and cache keys


def build_conversation(
    item: EvalItem, instruction: str, choice_hint: str, n_images: int, choices_hint: str | None = None
) -> list[dict]:
    """The user turn, exactly as in training (`data.build_prompt`), with the choice hint for choice questions (the
    plural one, `choices_hint`, for questions answered by a set of letters)."""
    from ..data import build_prompt

    question = item.question
    hint = {"choice": choice_hint, "choices": choice_hint if choices_hint is None else choices_hint}.get(
        item.answer_type)
    if hint:
        question = f"{question}\n{hint}"
    return build_prompt(question, n_images, instruction)


def question_seed(seed: int, item_id: str) -> int:
    """The sampling seed of one question: drawn from the run's seed and the question's id, so that questions are
    sampled independently and a resumed run, or one with another `--limit`, samples the same completions.

    Example:

    ```python
    >>> question_seed(0, "1") == question_seed(0, "1") != question_seed(0, "2")
    True

    ```
    """
    return int.from_bytes(hashlib.sha256(f"{seed}/{item_id}".encode()).digest()[:4], "big") >> 1


def question_hash(item: EvalItem) -> str:
    return hashlib.sha256(item.question.encode()).hexdigest()[:12]


def _hash(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


class SampleCache:
    """Append-only jsonl of generated outputs for one benchmark, keyed by `(item id, settings hash)`."""

    def __init__(self, path: str):
        self.path = path
        self.records: dict[tuple[str, str], dict] = {}
        if os.path.exists(path):
            with open(path) as f:
                for line in f:
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError:  # the last line of a run that was killed mid-write
                        continue
                    self.records[(record["id"], record["settings"])] = record

    def get(self, item: EvalItem, settings: str) -> dict | None:
        record = self.records.get((item.id, settings))
        if record is not None and record.get("question") != question_hash(item):
            return None  # same id, other question (another copy of the data): generate again
        return record

    def add(self, records: list[dict]) -> None:
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        with open(self.path, "a") as f:
            for record in records:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        for record in records:
            self.records[(record["id"], record["settings"])] = record


# ----------------------------------------------------------------------------------------------------------------
# Generation


@dataclass(frozen=True)
class Mode:
    """A generation mode: greedy (n=1, temperature 0) or k samples."""

    name: str
    n: int
    temperature: float
    top_p: float
    top_k: int | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def _load_images(loaded: LoadedBenchmark, item: EvalItem, config: EvalConfig) -> list:
    from ..images import ImageError, load_image, qwen_resize

    images = []
    for value in loaded.image_values(item):
        try:
            images.append(qwen_resize(load_image(value, loaded.base_dir), config.min_pixels, config.max_pixels))
        except ImageError as error:
            raise EvalError(f"{loaded.benchmark.title} item {item.id}: {error}") from None
        except Exception as error:  # qwen_vl_utils refuses extreme aspect ratios
            raise EvalError(f"{loaded.benchmark.title} item {item.id}: cannot use image: {error}") from None
    return images


def generate_outputs(
    loaded: LoadedBenchmark,
    backend,
    cache: SampleCache,
    mode: Mode,
    settings_key: str,
    config: EvalConfig,
    instruction: str,
) -> tuple[dict[str, list[str]], int]:
    """Outputs per item id for one mode, generating only what the cache lacks. Returns (outputs, generated)."""
    outputs: dict[str, list[str]] = {}
    pending: list[EvalItem] = []
    for item in loaded.items:
        record = cache.get(item, settings_key)
        if record is not None:
            outputs[item.id] = record["outputs"]
        else:
            pending.append(item)
    if not pending:
        return outputs, 0
    progress = None
    if config.progress:
        from tqdm.auto import tqdm

        progress = tqdm(total=len(loaded.items), initial=len(loaded.items) - len(pending),
                        desc=f"{loaded.benchmark.title} {mode.name}", unit="q", dynamic_ncols=True)
    try:
        for start in range(0, len(pending), config.batch_size):
            batch = pending[start : start + config.batch_size]
            images = [_load_images(loaded, item, config) for item in batch]
            conversations = [
                build_conversation(item, instruction, config.choice_hint, len(item_images), config.choices_hint)
                for item, item_images in zip(batch, images)
            ]
            texts = backend.generate(
                conversations, images, n=mode.n, temperature=mode.temperature, top_p=mode.top_p, top_k=mode.top_k,
                repetition_penalty=config.repetition_penalty, max_new_tokens=config.max_new_tokens,
                # seeded by the questions: a resumed run samples what the uninterrupted run would have
                seeds=[question_seed(config.seed, item.id) for item in batch],
            )
            now = time.time()
            records = [
                {"id": item.id, "settings": settings_key, "mode": mode.name, "question": question_hash(item),
                 "outputs": [completion_text(t) for t in out], "time": now}
                for item, out in zip(batch, texts)
            ]
            cache.add(records)
            for record in records:
                outputs[record["id"]] = record["outputs"]
            if progress is not None:
                progress.update(len(batch))
    finally:
        if progress is not None:
            progress.close()
    return outputs, len(pending)


# ----------------------------------------------------------------------------------------------------------------
# Scoring


def summarize(loaded: LoadedBenchmark, correct: list[bool]) -> dict:
    """The benchmark's metrics (percentages) for one correctness vector over its items."""
    name = loaded.benchmark.name
    if name == "dynamath":
        return {"accuracy": accuracy(correct), **dynamath_accuracy([i.group for i in loaded.items], correct)}
    if name == "wemath":
        return wemath_metrics([i.group for i in loaded.items], [i.part or "" for i in loaded.items], correct)
    return {"accuracy": accuracy(correct)}


class Extractor:
    """Rules, then the optional LLM extractor; counts which one read each output."""

    def __init__(self, llm: LLMExtractor | None):
        self.llm = llm

    def __call__(self, item: EvalItem, text: str) -> tuple[str | None, str | None]:
        answer, rule = extract_by_rules(text)
        if answer is None and self.llm is not None:
            answer = self.llm(item.question, text)
            rule = "llm" if answer is not None else None
        return answer, rule


def score_benchmark(
    loaded: LoadedBenchmark, greedy: dict[str, list[str]], sampled: dict[str, list[str]] | None, extractor: Extractor,
    predictions_path: str | None = None,
) -> dict:
    """Extraction, scoring and metrics for greedy pass@1 and, with samples, sampled pass@1 and maj@k."""
    items = loaded.items
    by_rule: dict[str, int] = {}
    rows = []
    greedy_correct, sample_correct, majority_correct = [], [], []
    for item in items:
        answer, rule = extractor(item, greedy[item.id][0])
        by_rule[rule or "none"] = by_rule.get(rule or "none", 0) + 1
        ok = score_answer(answer, item.reference, item.answer_type, item.options)
        greedy_correct.append(ok)
        row = {"id": item.id, "reference": item.reference, "answer_type": item.answer_type,
               "greedy": {"answer": answer, "extracted_by": rule, "correct": ok}}
        if sampled is not None:
            answers, rules = [], []
            for text in sampled[item.id]:
                a, r = extractor(item, text)
                by_rule[r or "none"] = by_rule.get(r or "none", 0) + 1
                answers.append(a)
                rules.append(r)
            oks, group_vote, majority_ok = score_samples(answers, item.reference, item.answer_type, item.options)
            sample_correct.append(oks)
            majority_correct.append(majority_ok)
            row["samples"] = {"answers": answers, "extracted_by": rules, "correct": oks,
                              "majority": group_vote.majority_answer, "majority_correct": majority_ok}
        rows.append(row)
    if predictions_path:
        with open(predictions_path, "w") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    results = {"greedy": summarize(loaded, greedy_correct)}
    if sampled is not None:
        k = len(sample_correct[0]) if sample_correct else 0
        results["sampled"] = mean_metrics(summarize(loaded, [c[j] for c in sample_correct]) for j in range(k))
        results["majority"] = summarize(loaded, majority_correct)
    return {"modes": results, "extraction": by_rule}


# ----------------------------------------------------------------------------------------------------------------
# The run


def default_instruction() -> str:
    from ..config import DEFAULT_INSTRUCTION

    return DEFAULT_INSTRUCTION


def resolve_data_path(config: EvalConfig, name: str) -> str | None:
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


def check_config(config: EvalConfig) -> list:
    """Validate names and options before anything heavy is loaded; returns the benchmarks."""
    from .backends import BACKENDS

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
    return benchmarks


def make_backend(config: EvalConfig, source, processor):
    from .backends import TransformersBackend, VLLMBackend

    if config.backend == "vllm":
        return VLLMBackend(
            source, processor, dtype=config.dtype, tensor_parallel_size=config.tensor_parallel_size,
            gpu_memory_utilization=config.gpu_memory_utilization, max_model_len=config.max_model_len,
            min_pixels=config.min_pixels, max_pixels=config.max_pixels, seed=config.seed,
            merge_dir=os.path.join(config.output_dir, "merged_model"),
        )
    return TransformersBackend(source, processor, dtype=config.dtype, device=config.device)


def evaluate(config: EvalConfig, backend=None) -> dict:
    """Run the evaluation; returns the results (also written to `output_dir/results.json` and `results.md`).

    `backend` may be given to reuse a loaded model (it must have `generate(...)` as `TransformersBackend`).
    """
    from ..images import processor_pixel_bounds
    from .backends import load_processor, resolve_model, weights_fingerprint
    from .report import write_results

    benchmarks = check_config(config)
    source = resolve_model(config.model, config.base_model)
    instruction = default_instruction() if config.instruction is None else config.instruction
    loaded_all = []
    for bench in benchmarks:
        loaded_all.append(load_benchmark(
            bench, resolve_data_path(config, bench.name), config.splits.get(bench.name), config.limit,
            {"mathverse_version": config.mathverse_version} if bench.name == "mathverse" else {},
        ))
    processor = load_processor(source, config.min_pixels, config.max_pixels) if backend is None else backend.processor
    if config.min_pixels is None or config.max_pixels is None:  # the bounds of the model's own processor
        min_pixels, max_pixels = processor_pixel_bounds(processor)
        config = dataclasses.replace(config, min_pixels=config.min_pixels or min_pixels,
                                     max_pixels=config.max_pixels or max_pixels)
    if backend is None:
        backend = make_backend(config, source, processor)

    llm = None
    if config.llm_extractor:
        llm = LLMExtractor(
            model=config.llm_extractor, base_url=config.llm_extractor_base_url,
            api_key=os.environ.get(config.llm_extractor_api_key_env),
            cache_path=os.path.join(config.output_dir, "samples", "llm_extractions.jsonl"),
        )
    extractor = Extractor(llm)
    common = {
        "model": os.path.abspath(source.model) if os.path.exists(source.model) else source.model,
        "model_fingerprint": weights_fingerprint(source.model),
        "adapter": os.path.abspath(source.adapter) if source.adapter else None,
        "adapter_fingerprint": weights_fingerprint(source.adapter) if source.adapter else None,
        "adapter_mode": getattr(backend, "adapter_mode", None),  # merged weights or a vLLM LoRA request
        "backend": backend.name, "instruction": instruction, "choice_hint": config.choice_hint,
        "choices_hint": config.choices_hint, "min_pixels": config.min_pixels, "max_pixels": config.max_pixels,
        "max_new_tokens": config.max_new_tokens, "repetition_penalty": config.repetition_penalty,
        "dtype": getattr(backend, "dtype", config.dtype),
    }
    greedy_mode = Mode("greedy", 1, 0.0, 1.0)
    sample_mode = Mode(f"samples{config.samples}", config.samples, config.temperature, config.top_p, config.top_k)
    results = {"benchmarks": {}}
    MATCH_STATS.snapshot(reset=True)
    for loaded in loaded_all:
        bench = loaded.benchmark
        cache = SampleCache(os.path.join(config.output_dir, "samples", f"{bench.name}.jsonl"))
        common_key = {**common, "benchmark": bench.name, "splits": loaded.splits}
        greedy_key = _hash({**common_key, **greedy_mode.as_dict()})
        greedy, generated = generate_outputs(loaded, backend, cache, greedy_mode, greedy_key, config, instruction)
        sampled = None
        if config.samples:
            sample_key = _hash({**common_key, **sample_mode.as_dict(), "seed": config.seed,
                                "batch_size": config.batch_size})
            sampled, more = generate_outputs(loaded, backend, cache, sample_mode, sample_key, config, instruction)
            generated += more
        scored = score_benchmark(
            loaded, greedy, sampled, extractor,
            predictions_path=os.path.join(config.output_dir, f"{bench.name}.predictions.jsonl"),
        )
        results["benchmarks"][bench.name] = {
            "title": bench.title,
            "metric": config.metrics.get(bench.name, bench.metrics[0]),
            "n": len(loaded.items),
            "left_out": loaded.left_out,  # rows without a reference
            "source": loaded.source,
            "splits": list(loaded.splits) if loaded.splits else None,
            "generated": generated,
            "cached": len(loaded.items) * (2 if config.samples else 1) - generated,
            "scoring": bench.scoring,
            **scored,
        }
    results["run"] = {
        "model": config.model, "base_model": source.model if source.adapter else None,
        "adapter": source.adapter, "adapter_mode": common["adapter_mode"],
        "adapter_served": getattr(backend, "adapter_served", None),
        "backend": backend.name, "dtype": common["dtype"], "instruction": instruction,
        "choice_hint": config.choice_hint, "choices_hint": config.choices_hint, "min_pixels": config.min_pixels,
        "max_pixels": config.max_pixels, "max_new_tokens": config.max_new_tokens,
        "repetition_penalty": config.repetition_penalty, "samples": config.samples,
        "temperature": config.temperature if config.samples else None,
        "top_p": config.top_p if config.samples else None, "top_k": config.top_k if config.samples else None,
        "seed": config.seed, "limit": config.limit,
        "extraction": RULES_DESCRIPTION + (f"; then {llm.description}" if llm else ""),
        "mathverse_version": config.mathverse_version, "match_stats": MATCH_STATS.snapshot(),
    }
    return write_results(results, config.output_dir)
