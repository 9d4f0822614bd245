"""The evaluation loop: prompts, generation in batches through the resumable cache (`cache`), extraction, scoring,
results (`report`)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass

from tqdm.auto import tqdm

from ..answers import MATCH_STATS, completion_text
from ..data import DEFAULT_INSTRUCTION, build_prompt, build_text_prompt
from ..data.images import (ImageError, load_image, merged_patch, processor_patch_size, processor_pixel_bounds,
                           qwen_resize)
from .backends import ModelSource, TransformersBackend, VLLMBackend, load_processor, resolve_model, weights_fingerprint
from .benchmarks import Benchmark, EvalError, EvalItem
from .cache import SampleCache, question_hash, settings_hash
from .config import EvalConfig, check_config, resolve_data_path
from .extraction import RULES_DESCRIPTION, LLMExtractor, extract_by_rules
from .loading import LoadedBenchmark, load_benchmark
from .preflight import preflight_report
from .report import write_results
from .scoring import accuracy, dynamath_accuracy, mean_metrics, score_answer, score_samples, wemath_metrics

# ----------------------------------------------------------------------------------------------------------------
# Prompts

def build_conversation(
    item: EvalItem, instruction: str, choice_hint: str, n_images: int, choices_hint: str | None = None
) -> list[dict]:
    """The user turn, exactly as in training (`data.build_prompt`), with the choice hint for choice questions (the
    plural one, `choices_hint`, for questions answered by a set of letters)."""
    question = question_with_hint(item, choice_hint, choices_hint)
    if n_images == 0:  # plain text, as a text-only dataset's training prompts (`data.build_text_prompt`)
        return build_text_prompt(question, instruction)
    return build_prompt(question, n_images, instruction)


def question_with_hint(item: EvalItem, choice_hint: str, choices_hint: str | None = None) -> str:
    """The question with the choice hint of its answer type (none for free-form questions), before the instruction:
    the text that the evaluation prompt and a benchmark's training rows (`as_training`) both show."""
    hint = {"choice": choice_hint, "choices": choice_hint if choices_hint is None else choices_hint}.get(
        item.answer_type)
    return f"{item.question}\n{hint}" if hint else item.question


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


def _load_images(loaded: LoadedBenchmark, item: EvalItem, config: EvalConfig, patch_size: int) -> list:
    images = []
    for value in loaded.image_values(item):
        try:
            images.append(qwen_resize(load_image(value, loaded.base_dir), config.min_pixels, config.max_pixels,
                                      patch_size))
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
        progress = tqdm(total=len(loaded.items), initial=len(loaded.items) - len(pending),
                        desc=f"{loaded.benchmark.title} {mode.name}", unit="q", dynamic_ncols=True)
    patch_size = processor_patch_size(backend.processor)  # the model family's resize unit (images.py)
    try:
        for start in range(0, len(pending), config.batch_size):
            batch = pending[start : start + config.batch_size]
            images = [_load_images(loaded, item, config, patch_size) for item in batch]
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
    predictions_path: str | None = None, preflight: bool = False,
) -> dict:
    """Extraction, scoring and metrics for greedy pass@1 and, with samples, sampled pass@1 and maj@k (and with
    `preflight`, the pre-flight estimates and verdict, `preflight.preflight_report`)."""
    items = loaded.items
    by_rule: dict[str, int] = {}
    rows = []
    greedy_correct, sample_correct, majority_correct, has_majority = [], [], [], []
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
            has_majority.append(group_vote.majority is not None)
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
    scored = {"modes": results, "extraction": by_rule}
    if preflight and sampled is not None:
        scored["preflight"] = preflight_report(greedy_correct, sample_correct, majority_correct, has_majority)
    return scored




# ----------------------------------------------------------------------------------------------------------------
# The run


def make_backend(config: EvalConfig, source: ModelSource, processor):
    """The generation backend that `config.backend` names."""
    if config.backend == "vllm":
        return VLLMBackend(
            source, processor, dtype=config.dtype, tensor_parallel_size=config.tensor_parallel_size,
            gpu_memory_utilization=config.gpu_memory_utilization, max_model_len=config.max_model_len,
            min_pixels=config.min_pixels, max_pixels=config.max_pixels, seed=config.seed,
            merge_dir=os.path.join(config.output_dir, "merged_model"),
        )
    return TransformersBackend(source, processor, dtype=config.dtype, device=config.device)


def load_benchmarks(config: EvalConfig, benchmarks: list[Benchmark]) -> list[LoadedBenchmark]:
    """Every benchmark's items, from its local copy or the hub."""
    return [
        load_benchmark(
            bench, resolve_data_path(config, bench.name), config.splits.get(bench.name), config.limit,
            {"mathverse_version": config.mathverse_version} if bench.name == "mathverse" else {},
        )
        for bench in benchmarks
    ]


def prepare_backend(config: EvalConfig, source: ModelSource, backend=None) -> tuple[EvalConfig, object]:
    """The config with the pixel bounds of the model's own processor where none are given, and the backend (the one
    given, or a new one)."""
    processor = load_processor(source, config.min_pixels, config.max_pixels) if backend is None else backend.processor
    if config.min_pixels is None or config.max_pixels is None:  # the bounds of the model's own processor
        min_pixels, max_pixels = processor_pixel_bounds(processor)
        config = dataclasses.replace(config, min_pixels=config.min_pixels or min_pixels,
                                     max_pixels=config.max_pixels or max_pixels)
    if backend is None:
        backend = make_backend(config, source, processor)
    return config, backend


def make_extractor(config: EvalConfig) -> Extractor:
    """Rules, then the LLM extractor where `config.llm_extractor` names one."""
    llm = None
    if config.llm_extractor:
        llm = LLMExtractor(
            model=config.llm_extractor, base_url=config.llm_extractor_base_url,
            api_key=os.environ.get(config.llm_extractor_api_key_env),
            cache_path=os.path.join(config.output_dir, "samples", "llm_extractions.jsonl"),
        )
    return Extractor(llm)


def output_settings(config: EvalConfig, source: ModelSource, backend, instruction: str) -> dict:
    """Everything besides the benchmark and the mode that changes the outputs (it keys the cache)."""
    return {
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


def evaluate_benchmark(
    loaded: LoadedBenchmark, config: EvalConfig, backend, extractor: Extractor, common: dict, instruction: str
) -> dict:
    """One benchmark's outputs (generated where the cache lacks them), scores and results entry."""
    bench = loaded.benchmark
    cache = SampleCache(os.path.join(config.output_dir, "samples", f"{bench.name}.jsonl"))
    common_key = {**common, "benchmark": bench.name, "splits": loaded.splits}
    greedy_mode = Mode("greedy", 1, 0.0, 1.0)
    greedy_key = settings_hash({**common_key, **greedy_mode.as_dict()})
    greedy, generated = generate_outputs(loaded, backend, cache, greedy_mode, greedy_key, config, instruction)
    sampled = None
    if config.samples:
        sample_mode = Mode(f"samples{config.samples}", config.samples, config.temperature, config.top_p, config.top_k)
        sample_key = settings_hash({**common_key, **sample_mode.as_dict(), "seed": config.seed,
                                    "batch_size": config.batch_size})
        sampled, more = generate_outputs(loaded, backend, cache, sample_mode, sample_key, config, instruction)
        generated += more
    scored = score_benchmark(
        loaded, greedy, sampled, extractor,
        predictions_path=os.path.join(config.output_dir, f"{bench.name}.predictions.jsonl"),
        preflight=config.preflight,
    )
    return {
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


def run_summary(
    config: EvalConfig, source: ModelSource, backend, common: dict, instruction: str, extractor: Extractor
) -> dict:
    """The run's protocol, as results.json's `run` (the report and `--compare` read it)."""
    llm = extractor.llm
    return {
        "model": config.model, "base_model": source.model if source.adapter else None,
        "adapter": source.adapter, "adapter_mode": common["adapter_mode"],
        "adapter_served": getattr(backend, "adapter_served", None),
        "backend": backend.name, "dtype": common["dtype"], "instruction": instruction,
        "choice_hint": config.choice_hint, "choices_hint": config.choices_hint, "min_pixels": config.min_pixels,
        "max_pixels": config.max_pixels, "image_unit": merged_patch(processor_patch_size(backend.processor)),
        "max_new_tokens": config.max_new_tokens, "repetition_penalty": config.repetition_penalty,
        "samples": config.samples,
        "temperature": config.temperature if config.samples else None,
        "top_p": config.top_p if config.samples else None, "top_k": config.top_k if config.samples else None,
        "seed": config.seed, "limit": config.limit, "preflight": config.preflight,
        "extraction": RULES_DESCRIPTION + (f"; then {llm.description}" if llm else ""),
        "mathverse_version": config.mathverse_version, "match_stats": MATCH_STATS.snapshot(),
    }


def evaluate(config: EvalConfig, backend=None) -> dict:
    """Run the evaluation; returns the results (also written to `output_dir/results.json` and `results.md`).

    `backend` may be given to reuse a loaded model (it must have `generate(...)` as `TransformersBackend`).
    """
    benchmarks = check_config(config)
    source = resolve_model(config.model, config.base_model)
    instruction = DEFAULT_INSTRUCTION if config.instruction is None else config.instruction
    loaded_all = load_benchmarks(config, benchmarks)
    config, backend = prepare_backend(config, source, backend)
    extractor = make_extractor(config)
    common = output_settings(config, source, backend, instruction)
    MATCH_STATS.snapshot(reset=True)
    results = {"benchmarks": {
        loaded.benchmark.name: evaluate_benchmark(loaded, config, backend, extractor, common, instruction)
        for loaded in loaded_all
    }}
    results["run"] = run_summary(config, source, backend, common, instruction, extractor)
    return write_results(results, config.output_dir)
