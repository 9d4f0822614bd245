"""`python -m self_evolve_trl.eval` end to end on the tiny Qwen2.5-VL (CPU) with small local copies shaped like each
benchmark's columns; resuming an interrupted run; LoRA adapters; `--compare`; bad input."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import sys
import threading

import pytest

from self_evolve_trl.eval.__main__ import main


# ----------------------------------------------------------------------------------------------------------------
# Fixtures shaped like the hub copies (column names, types, splits)


def _image(seed: int):
    from PIL import Image

    return Image.new("RGB", (56 + 28 * (seed % 3), 84), ((40 * seed) % 255, 90, 160))


def _write(rows: dict, path: str, image_columns: dict | None = None):
    import datasets

    features = None
    if image_columns:
        base = datasets.Dataset.from_dict({k: v for k, v in rows.items() if k not in image_columns})
        features = base.features.copy()
        for column, kind in image_columns.items():
            features[column] = datasets.Image() if kind == "image" else datasets.List(datasets.Image())
    dataset = datasets.Dataset.from_dict(rows, features=features)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    dataset.to_parquet(path)


def write_benchmark_fixtures(root: str) -> dict[str, str]:
    """Small local copies of the seven benchmarks, in the hub's layouts; returns benchmark -> path."""
    paths = {}
    # MathVision: `options` list (empty for free-form), `<image1>` tags, `decoded_image` + `image` path string
    paths["mathvision"] = os.path.join(root, "mathvision")
    _write({
        "id": ["1", "2", "3", "4", "5"],
        "question": ["<image1> Which shape is red?", "How long is AB? <image1>", "Pick the area.", "Angle x?", "Sum?"],
        "options": [["square", "circle", "triangle"], [], ["1/2", "3/4", "1"], [], ["3", "4", "5", "6", "7"]],
        "image": ["images/1.jpg", "images/2.jpg", "images/3.jpg", "images/4.jpg", "images/5.jpg"],
        "decoded_image": [_image(i) for i in range(5)],
        "answer": ["A", "\\frac{1}{2}", "B", "140", "E"],
        "solution": [None] * 5,
        "level": [1, 2, 3, 4, 5],
        "subject": ["metric geometry"] * 5,
    }, os.path.join(paths["mathvision"], "data", "test-00000-of-00001.parquet"), {"decoded_image": "image"})
    # another split in the same folder, which must not be read
    _write({"id": ["x"], "question": ["never read"], "options": [[]], "image": ["x"], "decoded_image": [_image(9)],
            "answer": ["0"], "solution": [None], "level": [1], "subject": ["s"]},
           os.path.join(paths["mathvision"], "data", "testmini-00000-of-00001.parquet"), {"decoded_image": "image"})
    # MathVerse testmini: five problem versions; only "Vision Only" is evaluated by default. `question_for_eval` is
    # the full question with its options; the real references also give an option's text (`False`, a bearing) or
    # two letters, one a line
    paths["mathverse"] = os.path.join(root, "mathverse.parquet")
    angle = "As shown, angle A = 80. Find B.\nChoices:\nA:20°\nB:30°"
    for_eval = [angle, angle, "Find the length of AB.", "Is f increasing on (0, 1)?\nChoices:\nA:False\nB:True",
                "What is the bearing of B from A?\nChoices:\nA:053 ^\\circ T\nB:233 ^\\circ T",
                "Which two figures are congruent?\nChoices:\nA:I\nB:II\nC:III"]
    _write({
        "sample_index": ["1", "2", "3", "4", "5", "6"],
        "problem_index": ["1", "1", "2", "3", "4", "5"],
        "problem_version": ["Text Dominant"] + ["Vision Only"] * 5,
        "question": [angle, "", "", "", "", ""],
        "image": [_image(i) for i in range(1, 7)],
        "answer": ["A", "A", "5", "False", "053 ^\\circ T", "A\nB"],
        "question_type": ["multi-choice", "multi-choice", "free-form", "multi-choice", "multi-choice", "multi-choice"],
        "metadata": [{"split": "testmini", "subject": "plane geometry"}] * 6,
        "query_wo": ["q"] * 6,
        "query_cot": ["q"] * 6,
        "question_for_eval": for_eval,
    }, paths["mathverse"], {"image": "image"})
    # WeMath testmini: a two-step and a three-step composite problem (shared `ID` such as `2steps_17`, parts in `key`)
    paths["wemath"] = os.path.join(root, "wemath.parquet")
    keys = ["2steps_1", "2steps_2", "2steps_multi", "3steps_1", "3steps_2", "3steps_3", "3steps_multi"]
    _write({
        "ID": ["2steps_17"] * 3 + ["3steps_5"] * 4,
        "split": ["testmini"] * 7,
        "knowledge concept": ["Angles and Length"] * 7,
        "question": [f"Question {i}?" for i in range(7)],
        "option": ["A. 3 cm; B. 4 cm; C. 5 cm; D. No correct answer"] * 7,
        "answer": ["A", "B", "C", "A", "B", "C", "D"],
        "image_path": [_image(i) for i in range(7)],
        "key": keys,
        "question number": [1, 2, 3, 1, 2, 3, 4],
        "knowledge concept description": ["d"] * 7,
    }, paths["wemath"], {"image_path": "image"})
    # LogicVista: multi-letter answers, a question numbering its options (reference `3`), a row without a reference
    paths["logicvista"] = os.path.join(root, "logicvista.parquet")
    _write({
        "question": ["Which come next? Select from A-E", "Which two are rotations? A-D", "Odd one out? A-D",
                     "Which is the correct answer according to the image? Select from 1-5", ""],
        "answer": ["A", "A, C", "D", "3", ""],
        "reasoning": ["r"] * 5,
        "image": [_image(i) for i in range(5)],
        "skill": ["inductive", "spatial", "deductive", "deductive", "spatial"],
        "id": ["lv1", "lv2", "lv3", "lv4", "lv5"],
    }, paths["logicvista"], {"image": "image"})
    # DynaMath: one file per variant split, all ten of them (the same seed ids in each), named as on the hub
    # (`data/sample3-00000-of-00003.parquet` holds split sample_variant3); answer types `int` and `single answer`
    # as in the seed data, and options listed without a `Choices:` marker
    paths["dynamath"] = os.path.join(root, "dynamath")
    for variant in range(1, 11):
        _write({
            "id": ["1", "2", "3", "4", "5"],
            "question": ["Choices: (A) 1 (B) 2. Which?", "What is the slope?", "What is the trace of matrix A?",
                         "Which group has the largest Y value?\nA. Group 1\nB. Group 2\nC. Group 3",
                         "How many people prefer neither?"],
            "image": [f"images/{i}.png" for i in range(1, 6)],
            "decoded_image": [_image(variant + i) for i in range(5)],
            "ground_truth": ["B", f"{variant}.500", f"{variant}.000000000000001", "A", str(30 + variant)],
            "answer_type": ["multiple choice", "float", "int", "multiple choice", "single answer"],
            "subject": ["algebra"] * 5,
            "knowledge_level": ["high school"] * 5,
        }, os.path.join(paths["dynamath"], "data", f"sample{variant}-00000-of-{variant:05d}.parquet"),
            {"decoded_image": "image"})
    # Geo3K test as jsonl with image files next to it (`<image>` in the problem, a list of images)
    paths["geo3k"] = os.path.join(root, "geo3k")
    os.makedirs(os.path.join(paths["geo3k"], "img"))
    rows = []
    for i, answer in enumerate(["48", "2\\sqrt{3}"]):
        _image(i).save(os.path.join(paths["geo3k"], "img", f"{i}.png"))
        rows.append({"images": [f"img/{i}.png"], "problem": f"<image>Find x. Case {i}.", "answer": answer})
    with open(os.path.join(paths["geo3k"], "test.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    # GeoQA test (EasyR1's copy): images list, problem, answer
    paths["geoqa"] = os.path.join(root, "geoqa.parquet")
    _write({"images": [[_image(1)], [_image(2)]], "problem": ["<image>Angle ABC?", "<image>Length?"],
            "answer": ["140°", "5"]}, paths["geoqa"], {"images": "images"})
    return paths


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    return write_benchmark_fixtures(str(tmp_path_factory.mktemp("benchmarks")))


class ExtractorServer:
    """A real HTTP server speaking OpenAI's chat-completions protocol: it always extracts `A`."""

    def __init__(self):
        self.requests = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append(body)
                payload = json.dumps({
                    "id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": "A"}}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                }).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


@pytest.fixture
def extractor_server():
    server = ExtractorServer()
    yield server
    server.close()


def data_args(paths: dict, names=None) -> list[str]:
    out = []
    for name in names or paths:
        out += ["--data", f"{name}={paths[name]}"]
    return out


ALL = ["mathvision", "mathverse", "wemath", "logicvista", "dynamath", "geo3k", "geoqa"]
EXPECTED_ITEMS = {"mathvision": 5, "mathverse": 5, "wemath": 7, "logicvista": 4, "dynamath": 50, "geo3k": 2,
                  "geoqa": 2}


def load_results(output_dir) -> dict:
    with open(os.path.join(output_dir, "results.json")) as f:
        return json.load(f)


def read_jsonl(path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f]


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


def _config(tiny_model_dir, fixtures, out, **kwargs):
    from self_evolve_trl.eval.runner import EvalConfig

    defaults = dict(model=tiny_model_dir, benchmarks=["mathvision"], output_dir=str(out),
                    data={"mathvision": fixtures["mathvision"]}, max_new_tokens=3, batch_size=2, progress=False)
    return EvalConfig(**{**defaults, **kwargs})


def _backend(tiny_model_dir, fail_on_call=None):
    from self_evolve_trl.eval.backends import TransformersBackend, load_processor, resolve_model

    class Interrupted(RuntimeError):
        pass

    class CountingBackend(TransformersBackend):
        """The real transformers backend; optionally dies on its n-th generate call, like a killed job."""

        def generate(self, conversations, images, **kwargs):
            if fail_on_call is not None and self.calls + 1 == fail_on_call:
                self.calls += 1
                raise Interrupted("killed")
            return super().generate(conversations, images, **kwargs)

    source = resolve_model(tiny_model_dir)
    return CountingBackend(source, load_processor(source, None, None)), Interrupted


def test_interrupted_run_resumes_without_recomputing(tiny_model_dir, fixtures, tmp_path):
    from self_evolve_trl.eval.runner import evaluate

    out = tmp_path / "out"
    config = _config(tiny_model_dir, fixtures, out, samples=2)
    backend, interrupted = _backend(tiny_model_dir, fail_on_call=2)
    with pytest.raises(interrupted):
        evaluate(config, backend=backend)
    cache = out / "samples" / "mathvision.jsonl"
    done = read_jsonl(cache)
    assert [r["id"] for r in done] == ["1", "2"]  # the first batch (2 questions) was kept

    backend, _ = _backend(tiny_model_dir)
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
    backend, _ = _backend(tiny_model_dir)
    evaluate(_config(tiny_model_dir, fixtures, fresh, samples=2), backend=backend)
    key = lambda r: (r["id"], r["mode"])  # noqa: E731
    assert sorted((key(r), r["outputs"]) for r in read_jsonl(fresh / "samples" / "mathvision.jsonl")) == sorted(
        (key(r), r["outputs"]) for r in records)


def test_larger_limit_generates_only_the_new_questions(tiny_model_dir, fixtures, tmp_path):
    from self_evolve_trl.eval.runner import evaluate

    out = tmp_path / "out"
    backend, _ = _backend(tiny_model_dir)
    names = ["mathvision", "dynamath", "wemath"]
    config = lambda limit: _config(tiny_model_dir, fixtures, out, benchmarks=names, limit=limit,  # noqa: E731
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
    backend, _ = _backend(tiny_model_dir)
    evaluate(_config(tiny_model_dir, fixtures, out, limit=2), backend=backend)
    cache = out / "samples" / "mathvision.jsonl"
    lines = cache.read_text().splitlines()
    cache.write_text(lines[0] + "\n" + lines[1][: len(lines[1]) // 2])  # killed in the middle of a write
    backend, _ = _backend(tiny_model_dir)
    results = evaluate(_config(tiny_model_dir, fixtures, out, limit=2), backend=backend)
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

    base = evaluate(_config(tiny_model_dir, fixtures, tmp_path / "base", max_new_tokens=6))
    tuned = evaluate(_config(str(adapter_dir), fixtures, tmp_path / "tuned", max_new_tokens=6))
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
    first = evaluate(_config(tiny_model_dir, fixtures, out, limit=2, dtype="auto"))
    assert first["run"]["dtype"] == "float32" and "backend: transformers, float32" in first["markdown"]
    again = evaluate(_config(tiny_model_dir, fixtures, out, limit=2, dtype="float32"))
    assert (again["benchmarks"]["mathvision"]["generated"], again["benchmarks"]["mathvision"]["cached"]) == (0, 2)


# ----------------------------------------------------------------------------------------------------------------
# Local copies: splits, hub download layouts


def test_a_multi_split_benchmark_missing_splits_stops_unless_narrowed(fixtures, tmp_path, capsys, tiny_model_dir):
    """DynaMath's worst case is over its 10 variants: a copy with 2 of them is not scored as if it were complete."""
    from self_evolve_trl.eval.benchmarks import EvalError, get_benchmark, load_benchmark

    partial = tmp_path / "dynamath"
    (partial / "data").mkdir(parents=True)
    for variant in (1, 2):
        name = f"sample{variant}-00000-of-{variant:05d}.parquet"
        shutil.copy(os.path.join(fixtures["dynamath"], "data", name), partial / "data" / name)
    dynamath = get_benchmark("dynamath")
    with pytest.raises(EvalError) as error:
        load_benchmark(dynamath, str(partial))
    assert str(error.value) == (
        f"DynaMath: folder {partial} has no file for split {', '.join(f'sample_variant{i}' for i in range(3, 11))} "
        "(found sample_variant1, sample_variant2); to score only the splits there, say so: "
        "--split dynamath=sample_variant1,sample_variant2 (the metric is then over those splits only).")
    loaded = load_benchmark(dynamath, str(partial), split="sample_variant1,sample_variant2")
    assert loaded.splits == ("sample_variant1", "sample_variant2")
    assert [item.id for item in loaded.items] == [f"{seed}/sample_variant{v}" for v in (1, 2) for seed in "12345"]
    with pytest.raises(EvalError, match="has no file for split sample_variant3 \\(found sample_variant1\\)\\.$"):
        load_benchmark(dynamath, str(partial), split="sample_variant1,sample_variant3")
    # the command line says it in one line, and records the splits read
    err = _error(["--model", tiny_model_dir, "--benchmarks", "dynamath", "--data", f"dynamath={partial}",
                  "--output-dir", str(tmp_path / "o")], capsys)
    assert err.startswith("error: DynaMath: folder") and "--split dynamath=sample_variant1,sample_variant2" in err


def test_the_fixtures_read_as_the_real_data(fixtures):
    """The fixtures hold the real data's odd rows; each is read as the benchmark means it."""
    from self_evolve_trl.eval.benchmarks import get_benchmark, load_benchmark
    from self_evolve_trl.eval.scoring import score_answer, wemath_metrics

    dynamath = load_benchmark(get_benchmark("dynamath"), fixtures["dynamath"])  # the hub's sample{N} file names
    assert dynamath.splits == tuple(f"sample_variant{i}" for i in range(1, 11))
    first = dynamath.items[:5]
    assert [item.id for item in first] == [f"{seed}/sample_variant1" for seed in "12345"]
    assert [item.answer_type for item in first] == ["choice", "float", "float", "choice", "float"]
    assert first[3].options == {"A": "Group 1", "B": "Group 2", "C": "Group 3"}
    assert score_answer("Group 1", first[3].reference, "choice", first[3].options)
    assert score_answer("1.0", first[2].reference, "float")  # int: 1.000000000000001
    logicvista = load_benchmark(get_benchmark("logicvista"), fixtures["logicvista"])
    assert [(item.id, item.answer_type) for item in logicvista.items] == [
        ("lv1", "choices"), ("lv2", "choices"), ("lv3", "choices"), ("lv4", "free")]
    assert logicvista.left_out == ["lv5"]
    mathverse = load_benchmark(get_benchmark("mathverse"), fixtures["mathverse"], settings={})
    assert [(item.id, item.answer_type) for item in mathverse.items] == [
        ("2", "choice"), ("3", "free"), ("4", "choice"), ("5", "choice"), ("6", "choices")]
    assert [score_answer("A", item.reference, item.answer_type, item.options) for item in mathverse.items] == [
        True, False, True, True, False]
    wemath = load_benchmark(get_benchmark("wemath"), fixtures["wemath"])
    assert [item.id for item in wemath.items[:3]] == ["2steps_17/2steps_1", "2steps_17/2steps_2",
                                                      "2steps_17/2steps_multi"]
    metrics = wemath_metrics([i.group for i in wemath.items], [i.part for i in wemath.items], [True] * 7)
    assert (metrics["composite_problems"], metrics["CM_strict"], metrics["score_strict"]) == (2, 2, 100.0)


def test_hub_download_folders_are_read_as_the_hub_splits_them(tmp_path):
    """A MathVerse snapshot: testmini.parquet beside testmini_text_only.parquet (another split) and json copies of
    both; a shard named the hub's way with its hash suffix."""
    import datasets

    from self_evolve_trl.eval.benchmarks import get_benchmark, load_benchmark

    root = tmp_path / "MathVerse"
    rows = {"sample_index": ["1", "2"], "problem_index": ["1", "1"], "problem_version": ["Vision Only", "Text Lite"],
            "question": ["", "q"], "image": [_image(1), _image(2)], "answer": ["A", "5"],
            "question_type": ["multi-choice", "free-form"], "query_wo": ["q"] * 2, "query_cot": ["q"] * 2,
            "question_for_eval": ["q"] * 2}
    _write(rows, str(root / "testmini.parquet"), {"image": "image"})
    text_only = {"sample_index": ["t1"], "problem_index": ["1"], "problem_version": ["Text Only"], "question": ["q"],
                 "answer": ["A"], "question_type": ["multi-choice"], "query_wo": ["q"], "query_cot": ["q"],
                 "question_for_eval": ["q"]}
    datasets.Dataset.from_dict(text_only).to_parquet(str(root / "testmini_text_only.parquet"))
    for name in ("testmini", "testmini_text_only"):
        (root / f"{name}.json").write_text(json.dumps([{"sample_index": "j", "problem_version": "Vision Only"}]))
    loaded = load_benchmark(get_benchmark("mathverse"), str(root), settings={"mathverse_version": "all"})
    assert [item.id for item in loaded.items] == ["1", "2"] and loaded.splits == ("testmini",)

    geo = tmp_path / "geometry3k"
    for split, answers in (("test", ["1", "2"]), ("train", ["9"])):
        _write({"images": [[_image(i)] for i in range(len(answers))], "problem": ["<image>x?"] * len(answers),
                "answer": answers}, str(geo / "data" / f"{split}-00000-of-00001-5f3c2b1e0a9d.parquet"),
               {"images": "images"})
    loaded = load_benchmark(get_benchmark("geo3k"), str(geo))
    assert [item.reference for item in loaded.items] == ["1", "2"] and loaded.splits == ("test",)


def test_unknown_mathverse_version_lists_the_versions_found(fixtures):
    from self_evolve_trl.eval.benchmarks import EvalError, get_benchmark, load_benchmark

    with pytest.raises(EvalError) as error:
        load_benchmark(get_benchmark("mathverse"), fixtures["mathverse"], settings={"mathverse_version": "Vison Only"})
    assert str(error.value) == (
        f"MathVerse: no items with problem_version 'Vison Only' in {fixtures['mathverse']}; the data has: "
        "Text Dominant, Vision Only (--mathverse-version one of them, or all).")


# ----------------------------------------------------------------------------------------------------------------
# --compare


def test_compare_prints_differences_and_protocol_changes(tmp_path, capsys):
    def result(value, instruction):
        return {
            "run": {"model": "m", "instruction": instruction, "backend": "transformers"},
            "benchmarks": {
                "mathvision": {"title": "MathVision", "metric": "accuracy", "n": 10, "source": "s",
                               "modes": {"greedy": {"accuracy": value}}},
                "wemath": {"title": "WeMath", "metric": "score_strict", "n": 7, "source": "s",
                           "modes": {"greedy": {"score_strict": value / 2}}},
            },
        }

    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(result(20.0, "box it")))
    b.write_text(json.dumps(result(25.5, "box it")))
    assert main(["--compare", str(a), str(b)]) == 0
    text = capsys.readouterr().out
    assert "| MathVision | accuracy | greedy | 20.0 | 25.5 | +5.5 |" in text
    assert "| WeMath | score_strict | greedy | 10.0 | 12.8 | +2.8 |" in text
    assert "| Average | | greedy | | | +4.1 |" in text and "Same protocol." in text
    b.write_text(json.dumps(result(25.5, "answer only")))
    assert main(["--compare", str(a), str(b)]) == 0
    assert "instruction: A = 'box it', B = 'answer only'" in capsys.readouterr().out


# ----------------------------------------------------------------------------------------------------------------
# Bad input: one line naming the problem and the valid choices, exit status 2


def _error(argv, capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]  # after datasets' progress bars
    assert err.startswith("error: "), err
    return err


def test_unknown_benchmark_names_the_valid_ones(run):
    result = run([sys.executable, "-m", "self_evolve_trl.eval", "--model", "x", "--benchmarks", "mathvision,mmmu"])
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: Unknown benchmark 'mmmu'; valid benchmarks: mathvision, mathverse, wemath, logicvista, dynamath, "
        "geo3k, geoqa.")


def test_missing_column_names_it_and_the_available_ones(fixtures, tmp_path, capsys, tiny_model_dir):
    import datasets

    broken = tmp_path / "logicvista.parquet"
    datasets.Dataset.from_parquet(fixtures["logicvista"]).remove_columns("answer").to_parquet(str(broken))
    err = _error(["--model", tiny_model_dir, "--benchmarks", "logicvista", "--data", f"logicvista={broken}",
                  "--output-dir", str(tmp_path / "o")], capsys)
    assert f"LogicVista data {broken} has no column 'answer'; available columns: question, reasoning, image" in err


def test_missing_image_column(fixtures, tmp_path, capsys, tiny_model_dir):
    import datasets

    broken = tmp_path / "wemath.parquet"
    datasets.Dataset.from_parquet(fixtures["wemath"]).remove_columns("image_path").to_parquet(str(broken))
    err = _error(["--model", tiny_model_dir, "--benchmarks", "wemath", "--data", f"wemath={broken}",
                  "--output-dir", str(tmp_path / "o")], capsys)
    assert "has no image column (one of image_path, image)" in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--benchmarks", "wemath", "--data", "wemath=/nonexistent/wemath.parquet"],
         "Local data not found: /nonexistent/wemath.parquet"),
        (["--benchmarks", "wemath", "--metric", "wemath=f1"],
         "Unknown metric 'f1' for wemath; valid metrics: score_strict, score_loose, accuracy."),
        (["--benchmarks", "wemath", "--data", "dynamath=/x"], "--data names 'dynamath', which is not among"),
        (["--benchmarks", "wemath", "--data", "wemath"], "--data takes BENCHMARK=VALUE, got 'wemath'."),
        (["--benchmarks", "wemath", "--samples", "1"], "--samples must be 0 (greedy only) or at least 2, got 1."),
        (["--benchmarks", "wemath", "--repetition-penalty", "0"],
         "--repetition-penalty must be positive (1.0: none), got 0.0."),
        (["--benchmarks", "wemath", "--top-k", "0"], "--top-k must be at least 1 (leave it out for none), got 0."),
        (["--benchmarks", "wemath", "--backend", "sglang"], "argument --backend: invalid choice: 'sglang'"),
    ],
)
def test_bad_options(argv, message, capsys, tmp_path):
    assert message in _error(["--model", "m", "--output-dir", str(tmp_path), *argv], capsys)


def test_data_dir_must_hold_every_benchmark(fixtures, tmp_path, capsys, tiny_model_dir):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    shutil.copy(fixtures["geoqa"], data_dir / "geoqa.parquet")
    err = _error(["--model", tiny_model_dir, "--benchmarks", "geoqa,logicvista", "--data-dir", str(data_dir),
                  "--output-dir", str(tmp_path / "out")], capsys)
    assert err == (f"error: --data-dir {data_dir} has no copy of logicvista: looked for {data_dir / 'logicvista'} (a "
                   f"folder) and {data_dir / 'logicvista'}{{.parquet,.jsonl,.json,.csv}}; add it, or give it with "
                   "--data logicvista=PATH.")
    assert not (tmp_path / "out").exists()


def test_image_bounds_default_to_the_models_processor(tiny_model_dir, fixtures, tmp_path):
    """A trained checkpoint's processor keeps its recipe's pixel bounds: evaluation resizes images to those (vLLM's
    engine gets them too: tests/test_vllm_eval.py)."""
    from transformers import AutoProcessor

    from self_evolve_trl.eval.runner import evaluate

    model = tmp_path / "checkpoint"
    shutil.copytree(tiny_model_dir, model)
    AutoProcessor.from_pretrained(tiny_model_dir, min_pixels=28 * 28, max_pixels=28 * 28 * 6).save_pretrained(model)
    results = evaluate(_config(str(model), fixtures, tmp_path / "out", limit=2))
    assert (results["run"]["min_pixels"], results["run"]["max_pixels"]) == (28 * 28, 28 * 28 * 6)
    assert "min_pixels=784, max_pixels=4704 (the model's processor's unless given)" in results["markdown"]


def test_lora_adapter_without_its_base_model_name(tiny_model_dir, fixtures, tmp_path, capsys):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    from self_evolve_trl.eval.runner import evaluate

    adapter_dir = tmp_path / "adapter"
    get_peft_model(AutoModelForImageTextToText.from_pretrained(tiny_model_dir),
                   LoraConfig(r=4, target_modules=["q_proj"])).save_pretrained(adapter_dir)
    config_path = adapter_dir / "adapter_config.json"
    config_path.write_text(json.dumps({**json.loads(config_path.read_text()), "base_model_name_or_path": None}))
    err = _error(["--model", str(adapter_dir), "--benchmarks", "geoqa", "--data", f"geoqa={fixtures['geoqa']}",
                  "--output-dir", str(tmp_path / "out")], capsys)
    assert "does not name its base model (base_model_name_or_path); pass --base-model." in err
    results = evaluate(_config(str(adapter_dir), fixtures, tmp_path / "out", base_model=tiny_model_dir, limit=1))
    assert results["run"]["base_model"] == tiny_model_dir and results["run"]["adapter"] == str(adapter_dir)


def test_missing_split_file_and_missing_model(fixtures, tmp_path, capsys, tiny_model_dir):
    err = _error(["--model", tiny_model_dir, "--benchmarks", "mathvision", "--split", "mathvision=sample_variant3",
                  "--data", f"mathvision={fixtures['mathvision']}", "--output-dir", str(tmp_path)], capsys)
    assert "has no file for split sample_variant3" in err
    err = _error(["--model", str(tmp_path / "no-model"), "--benchmarks", "geoqa", "--data",
                  f"geoqa={fixtures['geoqa']}", "--output-dir", str(tmp_path)], capsys)
    assert "Model path not found" in err


def test_hub_dataset_offline_says_how_to_give_a_local_copy(tmp_path, capsys, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    err = _error(["--model", tiny_model_dir, "--benchmarks", "logicvista", "--output-dir", str(tmp_path)], capsys)
    assert "LogicVista: cannot load lscpku/LogicVista split 'test' from the hub" in err
    assert "--data logicvista=PATH" in err


def test_killed_process_resumes_where_it_stopped(tiny_model_dir, tmp_path, run):
    """A real evaluation process killed (SIGKILL) mid-run; the same command then generates only what is missing."""
    import signal
    import subprocess
    import time

    data = tmp_path / "geoqa.parquet"
    n = 24
    _write({"images": [[_image(i)] for i in range(n)], "problem": [f"<image>Angle {i}?" for i in range(n)],
            "answer": [str(i) for i in range(n)]}, str(data), {"images": "images"})
    out = tmp_path / "out"
    command = [sys.executable, "-m", "self_evolve_trl.eval", "--model", tiny_model_dir, "--benchmarks", "geoqa",
               "--data", f"geoqa={data}", "--output-dir", str(out), "--max-new-tokens", "8", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}
    process = subprocess.Popen(command + ["--batch-size", "1"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cache = out / "samples" / "geoqa.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if cache.exists() and len(cache.read_text().splitlines()) >= 2:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = len(read_jsonl(cache))
    assert 2 <= finished < n, finished

    result = run(command + ["--batch-size", "8"])  # the batch size is not part of the greedy cache key
    assert result.returncode == 0, result.stderr[-3000:]
    entry = load_results(out)["benchmarks"]["geoqa"]
    assert (entry["generated"], entry["cached"]) == (n - finished, finished)
    assert len(read_jsonl(cache)) == n


# ----------------------------------------------------------------------------------------------------------------
# vLLM backend, what no real-engine test covers (tests/test_vllm_eval.py runs the real engine: prompts, images,
# pixel bounds, greedy decoding, dtype): the sampling parameters and seeds, and LoRA adapters. A stand-in of vLLM
# itself (its `LLM`, `SamplingParams`, `LoRARequest`, `ModelConfig`, platform) records what our thin wrapper hands it.


class FakeVLLM:
    def __init__(self):
        import types

        self.engines, self.calls = [], []
        fake = self

        class SamplingParams:
            def __init__(self, **kwargs):
                self.kwargs = kwargs

        class LLM:
            def __init__(self, **kwargs):
                fake.engines.append(kwargs)

            def generate(self, requests, params, lora_request=None, use_tqdm=True):
                params = params if isinstance(params, list) else [params] * len(requests)  # vLLM takes either
                assert len(params) == len(requests)
                fake.calls.append((requests, [p.kwargs for p in params], lora_request))
                Output = types.SimpleNamespace
                return [Output(outputs=[Output(text="so \\boxed{A}")] * p.kwargs["n"]) for p in params]

        class LoRARequest:
            def __init__(self, name, id, path):
                self.name, self.id, self.path = name, id, path

        class ModelConfig:  # vLLM's rule for `auto` with a float32 checkpoint
            def __init__(self, model, dtype):
                import torch

                self.dtype = torch.bfloat16 if dtype == "auto" else getattr(torch, dtype)

        self.vllm = types.ModuleType("vllm")
        self.vllm.LLM, self.vllm.SamplingParams = LLM, SamplingParams
        self.config = types.ModuleType("vllm.config")
        self.config.ModelConfig = ModelConfig
        self.platforms = types.ModuleType("vllm.platforms")
        self.platforms.current_platform = types.SimpleNamespace(is_cpu=lambda: False)  # a GPU
        self.lora = types.ModuleType("vllm.lora")
        self.lora_request = types.ModuleType("vllm.lora.request")
        self.lora_request.LoRARequest = LoRARequest

    def install(self, monkeypatch):
        import self_evolve_trl.config  # noqa: F401  (TRL probes for vLLM when first imported: not for the stand-in)

        monkeypatch.setitem(sys.modules, "vllm", self.vllm)
        monkeypatch.setitem(sys.modules, "vllm.config", self.config)
        monkeypatch.setitem(sys.modules, "vllm.platforms", self.platforms)
        monkeypatch.setitem(sys.modules, "vllm.lora", self.lora)
        monkeypatch.setitem(sys.modules, "vllm.lora.request", self.lora_request)


def test_vllm_backend_samples_each_question_with_its_own_seed(tiny_model_dir, fixtures, tmp_path, monkeypatch):
    from self_evolve_trl.eval.runner import evaluate, question_seed

    fake = FakeVLLM()
    fake.install(monkeypatch)
    config = _config(tiny_model_dir, fixtures, tmp_path / "out", backend="vllm", samples=3, temperature=0.7,
                     top_p=0.9, top_k=20, seed=5, batch_size=4, max_new_tokens=99)
    results = evaluate(config)
    (engine,) = fake.engines
    assert engine["model"] == tiny_model_dir and engine["seed"] == 5 and "enable_lora" not in engine
    greedy_calls = [c for c in fake.calls if c[1][0]["n"] == 1]
    sampled_calls = [c for c in fake.calls if c[1][0]["n"] == 3]
    assert [len(c[0]) for c in greedy_calls] == [4, 1] and [len(c[0]) for c in sampled_calls] == [4, 1]
    # explicit decoding: no repetition penalty (the checkpoint's generation_config is not vLLM's default either)
    assert greedy_calls[0][1][0] == {"n": 1, "temperature": 0.0, "top_p": 1.0, "max_tokens": 99,
                                     "repetition_penalty": 1.0, "seed": None}
    assert sampled_calls[1][1] == [{"n": 3, "temperature": 0.7, "top_p": 0.9, "top_k": 20, "max_tokens": 99,
                                    "repetition_penalty": 1.0, "seed": question_seed(5, "5")}]
    # each question is sampled with its own seed (from the run's seed and its id), not one seed per batch
    seeds = [params["seed"] for params in sampled_calls[0][1]]
    assert seeds == [question_seed(5, i) for i in ("1", "2", "3", "4")] and len(set(seeds)) == 4
    entry = results["benchmarks"]["mathvision"]
    assert results["run"]["backend"] == "vllm" and entry["extraction"] == {"boxed": 20}
    # every answer is "A": right for the questions whose reference is A (ids 1), wrong elsewhere
    assert entry["modes"]["greedy"]["accuracy"] == entry["modes"]["majority"]["accuracy"] == 20.0


def test_letter_set_questions_get_the_plural_hint(tiny_model_dir, fixtures, tmp_path, monkeypatch):
    from self_evolve_trl.eval.runner import DEFAULT_CHOICE_HINT, DEFAULT_CHOICES_HINT, evaluate

    fake = FakeVLLM()
    fake.install(monkeypatch)
    evaluate(_config(tiny_model_dir, fixtures, tmp_path / "out", backend="vllm", benchmarks=["logicvista", "wemath"],
                     data={n: fixtures[n] for n in ("logicvista", "wemath")}, limit=1))
    logicvista, wemath = (fake.calls[i][0][0]["prompt"] for i in (0, -1))  # 1 LogicVista item, then WeMath's
    assert f"Which come next? Select from A-E\n{DEFAULT_CHOICES_HINT} Reason" in logicvista
    assert f"No correct answer\n{DEFAULT_CHOICE_HINT} Reason" in wemath and DEFAULT_CHOICES_HINT not in wemath


def test_vllm_backend_serves_a_lora_adapter_as_a_lora_request(tiny_model_dir, fixtures, tmp_path, monkeypatch):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    from self_evolve_trl.eval.runner import evaluate

    adapter_dir = tmp_path / "adapter"
    # q_proj is in the language model only (the vision tower's attention has a fused qkv)
    get_peft_model(AutoModelForImageTextToText.from_pretrained(tiny_model_dir),
                   LoraConfig(r=24, target_modules=["q_proj"])).save_pretrained(adapter_dir)
    fake = FakeVLLM()
    fake.install(monkeypatch)
    results = evaluate(_config(str(adapter_dir), fixtures, tmp_path / "out", backend="vllm", limit=1))
    (engine,) = fake.engines
    # rank 24 needs max_lora_rank 32: vLLM accepts only 1, 8, 16, 32, 64, ...
    assert engine["model"] == tiny_model_dir and engine["enable_lora"] is True and engine["max_lora_rank"] == 32
    lora = fake.calls[0][2]
    assert (lora.name, lora.path) == ("adapter", str(adapter_dir))
    assert results["run"]["adapter_served"].startswith("served as a vLLM LoRA request")
    assert not (tmp_path / "out" / "merged_model").exists()


def test_vllm_backend_merges_an_adapter_with_vision_tower_weights(tiny_model_dir, fixtures, tmp_path, monkeypatch):
    """vLLM applies LoRA to the language model only: an adapter that also adapts the vision tower (gate/up/down_proj
    match Qwen2.5-VL's vision MLPs too) is merged with peft and vLLM gets the merged model, as transformers does."""
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from safetensors.torch import load_file
    from transformers import AutoModelForImageTextToText

    from self_evolve_trl.eval.runner import evaluate

    torch.manual_seed(0)
    adapter_dir = tmp_path / "adapter"
    get_peft_model(AutoModelForImageTextToText.from_pretrained(tiny_model_dir),
                   LoraConfig(r=4, target_modules=["gate_proj", "up_proj", "down_proj"], init_lora_weights=False)
                   ).save_pretrained(adapter_dir)
    assert any(".visual." in name for name in load_file(adapter_dir / "adapter_model.safetensors"))
    fake = FakeVLLM()
    fake.install(monkeypatch)
    out = tmp_path / "out"
    results = evaluate(_config(str(adapter_dir), fixtures, out, backend="vllm", limit=1))
    (engine,) = fake.engines
    merged = out / "merged_model"
    assert engine["model"] == str(merged) and "enable_lora" not in engine and fake.calls[0][2] is None
    served = results["run"]["adapter_served"]
    assert served.startswith(f"merged into the base model with peft ({merged}), as it has LoRA weights in the vision "
                             "tower") and served in results["markdown"]
    # the merged folder is a complete model with the processor, and holds the adapter's vision-tower update
    for name in ("config.json", "model.safetensors", "processor_config.json", "tokenizer_config.json",
                 "merged_from.json"):
        assert (merged / name).exists(), name
    key = "model.visual.blocks.0.mlp.gate_proj.weight"
    load = lambda path: AutoModelForImageTextToText.from_pretrained(path, dtype=torch.bfloat16)  # noqa: E731
    expected = PeftModel.from_pretrained(load(tiny_model_dir), str(adapter_dir)).merge_and_unload().state_dict()[key]
    weight = load(str(merged)).state_dict()[key]
    assert torch.equal(weight, expected) and not torch.equal(weight, load(tiny_model_dir).state_dict()[key])

    # the next run (one more question) reuses the merged folder; one with every output cached starts no engine
    stamp = os.stat(merged / "model.safetensors").st_mtime_ns
    evaluate(_config(str(adapter_dir), fixtures, out, backend="vllm", limit=2))
    assert os.stat(merged / "model.safetensors").st_mtime_ns == stamp and fake.engines[1]["model"] == str(merged)
    evaluate(_config(str(adapter_dir), fixtures, out, backend="vllm", limit=2))
    assert len(fake.engines) == 2


def test_vllm_backend_without_vllm_says_so(tiny_model_dir, fixtures, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # not importable, as on these machines
    err = _error(["--model", tiny_model_dir, "--benchmarks", "geoqa", "--data", f"geoqa={fixtures['geoqa']}",
                  "--backend", "vllm", "--output-dir", str(tmp_path)], capsys)
    assert "--backend vllm needs vLLM" in err and "use --backend transformers" in err
