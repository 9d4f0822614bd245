"""Shared helpers of the Actor–Judge tests (`test_judge_*.py`): the gate written out, trainer configs that judge,
and `JudgeStub`, a small `http.server` that answers like an OpenAI-compatible judge would (well-formed scores,
garbage, slowly, errors, or not at all), so that the success path and every failure path can be checked exactly."""

from __future__ import annotations

import json
import math
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

from self_evolve_trl.answers import completion_text
from self_evolve_trl.training.trainer import SelfEvolveGRPOTrainer


def gate_formula(s, t_high=0.95, tau_high=0.02, lam_pos=0.2, t_low=0.40, tau_low=0.05, lam_neg=0.2):
    """The gate (docs/math.md, "Actor–Judge") written out with `math`, independent of `judge_gate`."""
    sigma = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    return min(1.2, max(0.8, 1 + lam_pos * sigma((s - t_high) / tau_high) - lam_neg * sigma((t_low - s) / tau_low)))


JUDGE_KWARGS = {"judge_modulated": {"base_kwargs": {"hard_threshold": None}, "format_pattern": None}}
# The tiny model's random weights never write a score: runs that judge with it turn off the parse-failure stop.
NEVER_SCORES = {"judge_max_parse_failure_rate": None}


def judge_config(cpu_config, parse_limit=NEVER_SCORES, **overrides):
    """A CPU config with the judge_modulated reward (`parse_limit={}`: the default judge_max_parse_failure_rate)."""
    settings = dict(reward_funcs=["judge_modulated"], reward_kwargs=json.loads(json.dumps(JUDGE_KWARGS)),
                    judge_max_tokens=8, advantage="centered", **parse_limit)
    return cpu_config(**{**settings, **overrides})


def make_trainer(model_dir, processor, dataset, args, **kwargs):
    return SelfEvolveGRPOTrainer(model=model_dir, args=args, train_dataset=dataset, processing_class=processor,
                                 **kwargs)


def score_one_batch(trainer):
    """One generation round on prompt 0 (a group of 4) in training mode; returns the completions and the
    judge_modulated rewards."""
    trainer.model.train()
    trainer._generate_and_score_completions([trainer.train_dataset[0]] * 4)
    completions = [completion_text(c) for c in list(trainer._logs["completion"])[-4:]]
    return completions, trainer._last_rewards_per_func[:, 0].tolist()


def metric(trainer, name):
    return trainer._metrics["train"][name][-1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def judge_answer(score) -> str:
    scores = {"answer_correctness": score, "reasoning_quality": score, "visual_grounding": score,
              "overall_score": score}
    return (f"[BEGIN THOUGHT]\nChecked.\n[END THOUGHT]\n[BEGIN SCORES]\n{json.dumps(scores)}\n[END SCORES]\n"
            f"\\boxed{{{score}}}")


def seeded_score(seed: int) -> float:
    """The `seeded` judge stub's score of a request with this `seed`: 0.1 to 0.9."""
    return (seed % 9 + 1) / 10


class JudgeStub:
    """An OpenAI-compatible judge on loopback whose behaviour the test sets: `mode` is `score` (a well-formed
    judgement with `score`, or with the n-th of a list of scores for the n-th request), `garbage` (a chat completion
    without a score), `not_json` (an HTML page), `bad_json` (broken JSON), `error` (HTTP 503), `unauthorized`
    (HTTP 401 whose body echoes the request's `Authorization` header, as some gateways do), `flaky` (HTTP 503 on a
    request's first attempt, a score on its retry), `drop` (closes the connection), `slow` (waits `delay` seconds,
    then scores) or `seeded` (the score `seeded_score(seed)` of the request's `seed`, as a sampling judge that
    honours the seed would). After `fail_after` chat requests it switches to `then` (default `drop`: the endpoint
    goes down).
    `peak_in_flight` is the most chat requests it was ever handling at once."""

    def __init__(self):
        self.mode, self.score, self.delay, self.fail_after, self.then = "score", 0.97, 0.0, None, "drop"
        self.requests: list[dict] = []
        self.in_flight = self.peak_in_flight = 0
        self.lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, status, body, content_type="application/json"):
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path.endswith("/models"):
                    self.reply(200, {"object": "list", "data": [{"id": "stub-judge", "object": "model"}]})
                else:
                    self.reply(404, {"error": "not found"})

            def do_POST(self):
                with stub.lock:
                    stub.in_flight += 1
                    stub.peak_in_flight = max(stub.peak_in_flight, stub.in_flight)
                try:
                    self.answer()
                finally:
                    with stub.lock:
                        stub.in_flight -= 1

            def answer(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                with stub.lock:
                    stub.requests.append({"path": self.path, "body": body,
                                          "headers": {k.lower(): v for k, v in self.headers.items()}})
                    n = len(stub.requests)
                mode = stub.then if stub.fail_after is not None and n > stub.fail_after else stub.mode
                if mode == "flaky":  # the openai client numbers a request's attempts in this header
                    mode = "error" if self.headers.get("x-stainless-retry-count") == "0" else "score"
                if mode == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if mode == "slow":
                    time.sleep(stub.delay)
                if mode == "error":
                    return self.reply(503, {"error": {"message": "overloaded"}})
                if mode == "unauthorized":
                    return self.reply(401, {"error": {"message": f"invalid key in {self.headers['Authorization']}"}})
                if mode == "not_json":
                    return self.reply(200, b"<html>502 Bad Gateway</html>", "text/html")
                if mode == "bad_json":  # says JSON, is not: a body cut off by a proxy
                    return self.reply(200, b'{"id": "c", "choices": [{"mess')
                score = stub.score[(n - 1) % len(stub.score)] if isinstance(stub.score, list) else stub.score
                if mode == "seeded":
                    score = seeded_score(body["seed"])
                text = "I like this solution a lot." if mode == "garbage" else judge_answer(score)
                self.reply(200, {"id": "c", "object": "chat.completion", "created": 0, "model": body["model"],
                                 "choices": [{"index": 0, "finish_reason": "stop",
                                              "message": {"role": "assistant", "content": text}}]})

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass  # a client that timed out (the `slow` mode) leaves a broken pipe: expected

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def chat_requests(self):
        return [r for r in self.requests if r["path"].endswith("/chat/completions")]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def stub_config(cpu_config, stub, **overrides):
    settings = dict(judge_backend="openai", judge_base_url=stub.url, judge_timeout=10, judge_max_retries=0)
    return judge_config(cpu_config, **{**settings, **overrides})


def assert_saved(checkpoint: Path, step: int, files=()):
    """The judge's stop saved a complete checkpoint of `step`: weights, optimizer, trainer state (and `files`)."""
    for name in ("model.safetensors", "optimizer.pt", "trainer_state.json", *files):
        assert (checkpoint / name).is_file(), name
    assert json.loads((checkpoint / "trainer_state.json").read_text())["global_step"] == step


def tiny_recipe(tmp_path, model_dir, output_dir, **overrides) -> Path:
    """A recipe file for a short CPU run of judge_modulated on the tiny model."""
    recipe = tmp_path / "judge.yaml"
    recipe.write_text(yaml.safe_dump({
        "model_name_or_path": model_dir, "dataset_name": "synthetic", "synthetic_size": 8,
        "instruction": "Answer in \\boxed{}.", "answer_extractor": "last_number",
        "reward_funcs": ["judge_modulated"], "reward_kwargs": JUDGE_KWARGS, "advantage": "centered",
        "judge_max_retries": 0, "judge_timeout": 10, "judge_max_tokens": 8, **NEVER_SCORES, "num_generations": 4,
        "per_device_train_batch_size": 4, "max_completion_length": 8, "learning_rate": 0.05, "max_steps": 3,
        "logging_steps": 1, "save_strategy": "no", "use_cpu": True, "bf16": False, "gradient_checkpointing": False,
        "report_to": "none", "dataloader_num_workers": 0, "output_dir": str(output_dir), **overrides,
    }))
    return recipe
