"""Local copies of the benchmarks shaped like each hub copy (column names, types, splits), an OpenAI-compatible
extractor server, and the helpers that the evaluation tests share (tests/test_eval*.py, tests/eval/test_vllm_eval.py,
scripts/gpu_check.sh)."""

from __future__ import annotations

import http.server
import json
import os
import threading

import pytest

from self_evolve_trl.eval.__main__ import main

# ----------------------------------------------------------------------------------------------------------------
# Fixtures shaped like the hub copies (column names, types, splits)


def fixture_image(seed: int):
    from PIL import Image

    return Image.new("RGB", (56 + 28 * (seed % 3), 84), ((40 * seed) % 255, 90, 160))


def write_rows(rows: dict, path: str, image_columns: dict | None = None):
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
    write_rows({
        "id": ["1", "2", "3", "4", "5"],
        "question": ["<image1> Which shape is red?", "How long is AB? <image1>", "Pick the area.", "Angle x?", "Sum?"],
        "options": [["square", "circle", "triangle"], [], ["1/2", "3/4", "1"], [], ["3", "4", "5", "6", "7"]],
        "image": ["images/1.jpg", "images/2.jpg", "images/3.jpg", "images/4.jpg", "images/5.jpg"],
        "decoded_image": [fixture_image(i) for i in range(5)],
        "answer": ["A", "\\frac{1}{2}", "B", "140", "E"],
        "solution": [None] * 5,
        "level": [1, 2, 3, 4, 5],
        "subject": ["metric geometry"] * 5,
    }, os.path.join(paths["mathvision"], "data", "test-00000-of-00001.parquet"), {"decoded_image": "image"})
    # another split in the same folder, which must not be read
    write_rows({"id": ["x"], "question": ["never read"], "options": [[]], "image": ["x"], "decoded_image": [fixture_image(9)],
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
    write_rows({
        "sample_index": ["1", "2", "3", "4", "5", "6"],
        "problem_index": ["1", "1", "2", "3", "4", "5"],
        "problem_version": ["Text Dominant"] + ["Vision Only"] * 5,
        "question": [angle, "", "", "", "", ""],
        "image": [fixture_image(i) for i in range(1, 7)],
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
    write_rows({
        "ID": ["2steps_17"] * 3 + ["3steps_5"] * 4,
        "split": ["testmini"] * 7,
        "knowledge concept": ["Angles and Length"] * 7,
        "question": [f"Question {i}?" for i in range(7)],
        "option": ["A. 3 cm; B. 4 cm; C. 5 cm; D. No correct answer"] * 7,
        "answer": ["A", "B", "C", "A", "B", "C", "D"],
        "image_path": [fixture_image(i) for i in range(7)],
        "key": keys,
        "question number": [1, 2, 3, 1, 2, 3, 4],
        "knowledge concept description": ["d"] * 7,
    }, paths["wemath"], {"image_path": "image"})
    # LogicVista: multi-letter answers, a question numbering its options (reference `3`), a row without a reference
    paths["logicvista"] = os.path.join(root, "logicvista.parquet")
    write_rows({
        "question": ["Which come next? Select from A-E", "Which two are rotations? A-D", "Odd one out? A-D",
                     "Which is the correct answer according to the image? Select from 1-5", ""],
        "answer": ["A", "A, C", "D", "3", ""],
        "reasoning": ["r"] * 5,
        "image": [fixture_image(i) for i in range(5)],
        "skill": ["inductive", "spatial", "deductive", "deductive", "spatial"],
        "id": ["lv1", "lv2", "lv3", "lv4", "lv5"],
    }, paths["logicvista"], {"image": "image"})
    # DynaMath: one file per variant split, all ten of them (the same seed ids in each), named as on the hub
    # (`data/sample3-00000-of-00003.parquet` holds split sample_variant3); answer types `int` and `single answer`
    # as in the seed data, and options listed without a `Choices:` marker
    paths["dynamath"] = os.path.join(root, "dynamath")
    for variant in range(1, 11):
        write_rows({
            "id": ["1", "2", "3", "4", "5"],
            "question": ["Choices: (A) 1 (B) 2. Which?", "What is the slope?", "What is the trace of matrix A?",
                         "Which group has the largest Y value?\nA. Group 1\nB. Group 2\nC. Group 3",
                         "How many people prefer neither?"],
            "image": [f"images/{i}.png" for i in range(1, 6)],
            "decoded_image": [fixture_image(variant + i) for i in range(5)],
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
        fixture_image(i).save(os.path.join(paths["geo3k"], "img", f"{i}.png"))
        rows.append({"images": [f"img/{i}.png"], "problem": f"<image>Find x. Case {i}.", "answer": answer})
    with open(os.path.join(paths["geo3k"], "test.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    # GeoQA test (EasyR1's copy): images list, problem, answer
    paths["geoqa"] = os.path.join(root, "geoqa.parquet")
    write_rows({"images": [[fixture_image(1)], [fixture_image(2)]], "problem": ["<image>Angle ABC?", "<image>Length?"],
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



def error_line(argv, capsys) -> str:
    """The one `error: ...` line of a run refused with exit status 2."""
    assert main(argv) == 2
    err = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]  # after datasets' progress bars
    assert err.startswith("error: "), err
    return err


def eval_config(tiny_model_dir, fixtures, out, **kwargs):
    """A small `EvalConfig` of the tiny model on the MathVision fixture."""
    from self_evolve_trl.eval.config import EvalConfig

    defaults = dict(model=tiny_model_dir, benchmarks=["mathvision"], output_dir=str(out),
                    data={"mathvision": fixtures["mathvision"]}, max_new_tokens=3, batch_size=2, progress=False)
    return EvalConfig(**{**defaults, **kwargs})


def counting_backend(tiny_model_dir, fail_on_call=None):
    """The real transformers backend counting its generate calls; it raises `Interrupted` (returned beside it) on
    call `fail_on_call`."""
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


