"""`python -m self_evolve_trl.eval` end to end on the tiny Qwen2.5-VL (CPU) with small local copies shaped like each
benchmark's columns (tests/eval/eval_fixtures.py); resuming an interrupted run; LoRA adapters; explicit decoding."""

from __future__ import annotations

import json
import shutil
import sys

import pytest

from tests.eval.eval_fixtures import (
    ALL,
    EXPECTED_ITEMS,
    counting_backend,
    data_args,
    eval_config,
    extractor_server,  # noqa: F401  (a fixture)
    fixtures,  # noqa: F401  (a fixture)
    load_results,
    read_jsonl,
)


# ----------------------------------------------------------------------------------------------------------------
# End to end (subprocess, CPU)


def test_end_to_end_all_benchmarks_then_fully_cached(tiny_model_dir, fixtures, extractor_server, tmp_path, run):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "self_evolve_trl.eval", "--model", tiny_model_dir, "--benchmarks", ",".join(ALL),
               "--output-dir", str(out), "--max-new-tokens", "4", "--samples", "2", "--batch-size", "3",
               "--llm-extractor", "extractor-model", "--llm-extractor-base-url", extractor_server.url,
               *data_args(fixtures)]
    result = run(command)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| Model | Mode | MathVision | MathVerse (vision only) | WeMath (score, strict) | LogicVista | " \
           "DynaMath (worst case) | Geo3K | GeoQA | Average |" in result.stdout
    assert (out / "results.md").read_text() in result.stdout
    assert "MathVision greedy: 100%" in result.stderr and "DynaMath samples2: 100%" in result.stderr  # progress bars

    results = load_results(out)
    benchmarks = results["benchmarks"]
    assert {name: entry["n"] for name, entry in benchmarks.items()} == EXPECTED_ITEMS
    assert [row["label"] for row in results["table"]["rows"]] == [
        "greedy pass@1", "sampled pass@1 (k=2, T=1.0, top-p=1.0)", "maj@2"]
    for row in results["table"]["rows"]:
        assert row["average"] == pytest.approx(sum(row["values"].values()) / 7)

    # every number follows from the per-question predictions: the LLM extractor answered "A" where rules read nothing
    # (the tiny model's 4 random tokens are read by no rule: every greedy answer is the extractor's)
    for name, entry in benchmarks.items():
        predictions = read_jsonl(out / f"{name}.predictions.jsonl")
        assert [p["id"] for p in predictions] and len(predictions) == EXPECTED_ITEMS[name]
        assert [p["greedy"]["extracted_by"] for p in predictions] == ["llm"] * len(predictions)
        assert [p["greedy"]["answer"] for p in predictions] == ["A"] * len(predictions)
        correct = [p["greedy"]["correct"] for p in predictions]
        if name not in ("wemath", "dynamath"):
            assert entry["modes"]["greedy"]["accuracy"] == pytest.approx(100 * sum(correct) / len(correct))
        assert entry["generated"] == 2 * EXPECTED_ITEMS[name] and entry["cached"] == 0
    # "A" is right exactly where the reference is A (MathVision ids 1 and 3 have reference A and B) ...
    mathvision = {p["id"]: p for p in read_jsonl(out / "mathvision.predictions.jsonl")}
    assert mathvision["1"]["greedy"]["extracted_by"] == mathvision["3"]["greedy"]["extracted_by"] == "llm"
    assert mathvision["1"]["greedy"]["correct"] and not mathvision["3"]["greedy"]["correct"]
    # ... and LogicVista's "A, C" is not answered by "A", nor its numbered option 3; its row without a reference is
    # left out
    logicvista = {p["id"]: p for p in read_jsonl(out / "logicvista.predictions.jsonl")}
    assert [i for i, p in logicvista.items() if p["greedy"]["correct"]] == ["lv1"]
    assert benchmarks["logicvista"]["left_out"] == ["lv5"] and benchmarks["mathvision"]["left_out"] == []
    # MathVerse's references are read through the options: `False` and `053 ^\circ T` are option A; `A\nB` needs both
    mathverse = {p["id"]: p["greedy"]["correct"] for p in read_jsonl(out / "mathverse.predictions.jsonl")}
    assert mathverse == {"2": True, "3": False, "4": True, "5": True, "6": False}
    # DynaMath: the seeds whose every variant's reference is A (seed 4, options without a `Choices:` marker)
    assert benchmarks["dynamath"]["modes"]["greedy"]["seed_questions"] == 5
    assert benchmarks["dynamath"]["modes"]["greedy"]["worst_case"] == pytest.approx(20.0)
    assert benchmarks["dynamath"]["splits"] == [f"sample_variant{i}" for i in range(1, 11)]
    assert benchmarks["wemath"]["modes"]["greedy"]["composite_problems"] == 2
    extraction = results["run"]["extraction"]
    assert extraction.startswith("rules: last \\boxed{}") and "extractor-model" in extraction
    markdown = (out / "results.md").read_text()
    for text in ("## Protocol", "Reason about the problem step by step", "four-dimensional metrics", "worst case",
                 "| 4 (1 without a reference left out) |", "a numbered option's reference ('3')",
                 "LLM extractor extractor-model", "repetition penalty 1.0", "no top-k",
                 "none of the checkpoint's generation_config defaults applied",
                 "(split sample_variant1,sample_variant2,sample_variant3,"):
        assert text in markdown
    assert extractor_server.requests and extractor_server.requests[0]["temperature"] == 0.0
    sent = len(extractor_server.requests)

    # the same command again: nothing is generated and the extractor is not asked again
    again = run(command)
    assert again.returncode == 0, again.stderr[-3000:]
    results_again = load_results(out)
    for name, entry in results_again["benchmarks"].items():
        assert entry["generated"] == 0 and entry["cached"] == 2 * EXPECTED_ITEMS[name]
        assert entry["modes"] == benchmarks[name]["modes"]
    assert len(extractor_server.requests) == sent


# ----------------------------------------------------------------------------------------------------------------
# Resuming after an interruption (in process, counting the real backend's generate calls)


def test_interrupted_run_resumes_without_recomputing(tiny_model_dir, fixtures, tmp_path):
    from self_evolve_trl.eval.runner import evaluate

    out = tmp_path / "out"
    config = eval_config(tiny_model_dir, fixtures, out, samples=2)
    backend, interrupted = counting_backend(tiny_model_dir, fail_on_call=2)
    with pytest.raises(interrupted):
        evaluate(config, backend=backend)
    cache = out / "samples" / "mathvision.jsonl"
    done = read_jsonl(cache)
    assert [r["id"] for r in done] == ["1", "2"]  # the first batch (2 questions) was kept

    backend, _ = counting_backend(tiny_model_dir)
    results = evaluate(config, backend=backend)
    # greedy: 3 remaining questions in 2 batches; samples: 5 questions in 3 batches
    assert backend.calls == 2 + 3
    entry = results["benchmarks"]["mathvision"]
    assert (entry["generated"], entry["cached"]) == (3 + 5, 2)
    records = read_jsonl(cache)
    assert records[:2] == done  # finished questions were not recomputed
    assert sorted(r["id"] for r in records if r["mode"] == "greedy") == ["1", "2", "3", "4", "5"]
    assert all(len(r["outputs"]) == 2 for r in records if r["mode"] == "samples2")

    # an uninterrupted run with the same settings samples exactly the same completions (seeds follow the questions)
    fresh = tmp_path / "fresh"
    backend, _ = counting_backend(tiny_model_dir)
    evaluate(eval_config(tiny_model_dir, fixtures, fresh, samples=2), backend=backend)
    key = lambda r: (r["id"], r["mode"])  # noqa: E731
    assert sorted((key(r), r["outputs"]) for r in read_jsonl(fresh / "samples" / "mathvision.jsonl")) == sorted(
        (key(r), r["outputs"]) for r in records)


def test_larger_limit_generates_only_the_new_questions(tiny_model_dir, fixtures, tmp_path):
    from self_evolve_trl.eval.runner import evaluate

    out = tmp_path / "out"
    backend, _ = counting_backend(tiny_model_dir)
    names = ["mathvision", "dynamath", "wemath"]
    config = lambda limit: eval_config(tiny_model_dir, fixtures, out, benchmarks=names, limit=limit,  # noqa: E731
                                   data={n: fixtures[n] for n in names})
    first = evaluate(config(1), backend=backend)["benchmarks"]
    # DynaMath's and WeMath's limits count seed questions / composite problems with all their rows
    assert {k: v["n"] for k, v in first.items()} == {"mathvision": 1, "dynamath": 10, "wemath": 3}
    lines_before = (out / "samples" / "mathvision.jsonl").read_text().splitlines()
    second = evaluate(config(3), backend=backend)
    entries = second["benchmarks"]
    assert {k: (v["generated"], v["cached"]) for k, v in entries.items()} == {
        "mathvision": (2, 1), "dynamath": (20, 10), "wemath": (4, 3)}
    lines_after = (out / "samples" / "mathvision.jsonl").read_text().splitlines()
    assert lines_after[:1] == lines_before and len(lines_after) == 3
    assert "first 3 questions per benchmark" in second["markdown"]


def test_truncated_cache_line_is_ignored(tiny_model_dir, fixtures, tmp_path):
    from self_evolve_trl.eval.runner import evaluate

    out = tmp_path / "out"
    backend, _ = counting_backend(tiny_model_dir)
    evaluate(eval_config(tiny_model_dir, fixtures, out, limit=2), backend=backend)
    cache = out / "samples" / "mathvision.jsonl"
    lines = cache.read_text().splitlines()
    cache.write_text(lines[0] + "\n" + lines[1][: len(lines[1]) // 2])  # killed in the middle of a write
    backend, _ = counting_backend(tiny_model_dir)
    results = evaluate(eval_config(tiny_model_dir, fixtures, out, limit=2), backend=backend)
    assert backend.calls == 1 and results["benchmarks"]["mathvision"]["generated"] == 1


# ----------------------------------------------------------------------------------------------------------------
# LoRA adapters


def test_lora_adapter_is_loaded_on_its_base_model(tiny_model_dir, fixtures, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    from self_evolve_trl.eval.runner import evaluate

    torch.manual_seed(0)
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    adapter = get_peft_model(model, LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj", "o_proj"],
                                               init_lora_weights=False))
    adapter_dir = tmp_path / "adapter"
    adapter.save_pretrained(adapter_dir)
    assert (adapter_dir / "adapter_config.json").exists() and not (adapter_dir / "config.json").exists()

    base = evaluate(eval_config(tiny_model_dir, fixtures, tmp_path / "base", max_new_tokens=6))
    tuned = evaluate(eval_config(str(adapter_dir), fixtures, tmp_path / "tuned", max_new_tokens=6))
    assert tuned["run"]["adapter"] == str(adapter_dir) and tuned["run"]["base_model"] == tiny_model_dir
    assert "LoRA adapter on" in tuned["markdown"]
    outputs = lambda d: [r["outputs"] for r in read_jsonl(d / "samples" / "mathvision.jsonl")]  # noqa: E731
    assert outputs(tmp_path / "base") != outputs(tmp_path / "tuned")


# ----------------------------------------------------------------------------------------------------------------
# Decoding: explicit, whatever the checkpoint's generation_config says


def test_transformers_backend_ignores_the_checkpoints_decoding_defaults(tiny_model_dir, tmp_path, monkeypatch):
    """Qwen2.5-VL-7B-Instruct's generation_config sets repetition_penalty 1.05 (and top_k 1, ...); vLLM's explicit
    SamplingParams do not apply it, so the transformers backend must not either: only the options count."""
    from PIL import Image

    from self_evolve_trl.eval.backends import TransformersBackend, load_processor, resolve_model

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    config = json.loads((model / "generation_config.json").read_text())
    config.update(repetition_penalty=1.05, no_repeat_ngram_size=2, do_sample=True, top_k=1, top_p=0.001,
                  temperature=0.1)
    (model / "generation_config.json").write_text(json.dumps(config))
    source = resolve_model(str(model))
    backend = TransformersBackend(source, load_processor(source, None, None))
    processors = []
    real = backend.model._get_logits_processor

    def spy(*args, **kwargs):
        processors.append(real(*args, **kwargs))
        return processors[-1]

    monkeypatch.setattr(backend.model, "_get_logits_processor", spy)
    conversation = [{"role": "user", "content": [{"type": "image", "text": None}, {"type": "text", "text": "hi"}]}]
    image = [[Image.new("RGB", (56, 56))]]

    def used(**kwargs):
        backend.generate([conversation], image, max_new_tokens=2, **kwargs)
        return {type(p).__name__: p for p in processors[-1]}

    assert used() == {}  # greedy: nothing alters the logits
    penalty = used(repetition_penalty=1.2)
    assert list(penalty) == ["RepetitionPenaltyLogitsProcessor"]
    assert penalty["RepetitionPenaltyLogitsProcessor"].penalty == 1.2
    sampling = used(n=2, temperature=0.7, top_p=0.9, seeds=[3])
    assert sorted(sampling) == ["TemperatureLogitsWarper", "TopPLogitsWarper"]  # no top-k, no penalty
    assert sampling["TemperatureLogitsWarper"].temperature == 0.7 and sampling["TopPLogitsWarper"].top_p == 0.9
    assert used(n=2, temperature=0.7, top_k=5, seeds=[3])["TopKLogitsWarper"].top_k == 5


def test_auto_dtype_is_resolved_in_the_cache_key(tiny_model_dir, fixtures, tmp_path):
    """`--dtype auto` is float32 on the CPU: a run that says float32 reuses its outputs, and the record says which."""
    from self_evolve_trl.eval.runner import evaluate

    out = tmp_path / "out"
    first = evaluate(eval_config(tiny_model_dir, fixtures, out, limit=2, dtype="auto"))
    assert first["run"]["dtype"] == "float32" and "backend: transformers, float32" in first["markdown"]
    again = evaluate(eval_config(tiny_model_dir, fixtures, out, limit=2, dtype="float32"))
    assert (again["benchmarks"]["mathvision"]["generated"], again["benchmarks"]["mathvision"]["cached"]) == (0, 2)


