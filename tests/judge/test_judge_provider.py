"""Actor–Judge provider: the `judge_scores` input over the `openai` backend against `JudgeStub`: the success path,
the seeds each request carries, and the failure policy (garbage answers, errors, timeouts, an endpoint that goes
down: stop with a checkpoint, resume)."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest
from PIL import Image

from self_evolve_trl.judge import JudgeUnavailableError
from self_evolve_trl.rewards.consistency import soft_frequency
from self_evolve_trl.seeds import judge_seed
from tests.judge.judge_helpers import (
    JudgeStub,
    assert_saved,
    free_port,
    gate_formula,
    judge_config,
    make_trainer,
    metric,
    score_one_batch,
    seeded_score,
    stub_config,
    tiny_recipe,
)


def test_the_trainer_builds_the_provider_the_judge_package_names():
    from self_evolve_trl.judge import PROVIDERS
    from self_evolve_trl.training.trainer import REWARD_INPUT_PROVIDERS

    assert REWARD_INPUT_PROVIDERS["judge_scores"] == PROVIDERS["judge_scores"]


@pytest.fixture
def judge_stub():
    stub = JudgeStub()
    yield stub
    stub.close()


def test_openai_backend_success_path(judge_stub, monkeypatch, tmp_path, tiny_model_dir, tiny_processor,
                                     synthetic_dataset, cpu_config):
    monkeypatch.setenv("MY_JUDGE_KEY", "sk-test-secret-123")
    template = tmp_path / "judge.txt"
    template.write_text("=== system ===\nGrade it.\n=== user ===\nQ: {problem}\nA: {completion}\n")
    args = stub_config(cpu_config, judge_stub, judge_api_key_env="MY_JUDGE_KEY", judge_prompt_template=str(template),
                       judge_temperature=0.7, judge_top_p=0.8)
    trainer = make_trainer(tiny_model_dir, tiny_processor, synthetic_dataset(4), args)
    assert trainer.reward_input_providers["judge_scores"].backend.model == "stub-judge"  # asked the endpoint
    completions, rewards = score_one_batch(trainer)

    expected = [b * gate_formula(0.97) for b in soft_frequency(completions, 4, extractor="last_number")]
    assert rewards == pytest.approx([min(1.0, r) for r in expected], abs=1e-6)
    assert metric(trainer, "judge/score_mean") == pytest.approx(0.97)
    assert metric(trainer, "judge/gate_mean") == pytest.approx(gate_formula(0.97), abs=1e-6)
    assert metric(trainer, "judge/amplified_share") == 1.0 and metric(trainer, "judge/parse_failure_rate") == 0.0
    assert metric(trainer, "judge/request_failures") == 0 and metric(trainer, "judge/out_of_range_share") == 0.0

    requests = judge_stub.chat_requests()
    assert len(requests) == 4
    row = trainer.train_dataset[0]
    question = row["prompt"][0]["content"][-1]["text"]
    for request, completion in zip(sorted(requests, key=lambda r: r["body"]["messages"][1]["content"][1]["text"]),
                                   sorted(completions)):
        body = request["body"]
        assert request["headers"]["authorization"] == "Bearer sk-test-secret-123"
        assert (body["model"], body["temperature"], body["top_p"], body["max_tokens"]) == ("stub-judge", 0.7, 0.8, 8)
        system, user = body["messages"]
        assert system == {"role": "system", "content": "Grade it."}
        image_part, text_part = user["content"]
        assert image_part["image_url"]["url"].startswith("data:image/png;base64,")
        image = Image.open(io.BytesIO(base64.b64decode(image_part["image_url"]["url"].split(",", 1)[1])))
        assert image.size == row["images"][0].size
        assert text_part["text"] == f"Q: {question}\nA: {completion}"


def test_openai_requests_carry_the_seed_of_each_judgement(judge_stub, tiny_model_dir, tiny_processor,
                                                          synthetic_dataset, cpu_config):
    """Each request's `seed` is its judgement's: (seed, step, generation batch, completion, repeat). A judge that
    honours it (the stub scores by the seed) gives each completion the mean score of its own repeats' seeds; a second
    generation batch of the same step gets other seeds."""
    judge_stub.mode = "seeded"
    args = stub_config(cpu_config, judge_stub, judge_repeats=2, seed=7)
    trainer = make_trainer(tiny_model_dir, tiny_processor, synthetic_dataset(4), args)
    sent_before = set()
    for batch in [(), (1, 1)]:  # `seeds.batch_entropy` of the step's first and second generation batch
        seen = len(judge_stub.chat_requests())
        completions, rewards = score_one_batch(trainer)
        seeds = [[judge_seed(7, 0, i, repeat, batch) for repeat in range(2)] for i in range(4)]
        sent = [request["body"]["seed"] for request in judge_stub.chat_requests()[seen:]]
        assert sorted(sent) == sorted(seed for pair in seeds for seed in pair)
        assert not sent_before & set(sent)
        sent_before |= set(sent)
        scores = [sum(seeded_score(seed) for seed in pair) / 2 for pair in seeds]
        b = soft_frequency(completions, 4, extractor="last_number")
        assert rewards == pytest.approx([min(1.0, x * gate_formula(s)) for x, s in zip(b, scores)], abs=1e-6)
        assert metric(trainer, "judge/score_mean") == pytest.approx(sum(scores) / 4)


@pytest.mark.parametrize("on_failure", ["zero", "neutral"])
def test_garbage_answers_follow_the_failure_policy(on_failure, judge_stub, tiny_model_dir, tiny_processor,
                                                   synthetic_dataset, cpu_config, caplog):
    judge_stub.mode = "garbage"
    args = stub_config(cpu_config, judge_stub, judge_on_failure=on_failure, judge_repeats=2)
    trainer = make_trainer(tiny_model_dir, tiny_processor, synthetic_dataset(4), args)
    with caplog.at_level("WARNING", logger="self_evolve_trl.judge.provider"):
        completions, rewards = score_one_batch(trainer)
    assert [r.getMessage() for r in caplog.records if "no score that could be parsed" in r.getMessage()] == [
        f"8 of the judge's 8 answers at step 1 had no score that could be parsed (a \\boxed{{}} number or a JSON "
        f"overall_score); they count as judge_on_failure={on_failure}. Check the judge model and prompt template, or "
        "set judge_max_parse_failure_rate to stop such a run (see judge/parse_failure_rate)."
    ]
    gate = gate_formula(0.0) if on_failure == "zero" else 1.0
    expected = [b * gate for b in soft_frequency(completions, 4, extractor="last_number")]
    assert rewards == pytest.approx(expected, abs=1e-6)
    assert metric(trainer, "judge/samples") == 8 and metric(trainer, "judge/parse_failures") == 8
    assert metric(trainer, "judge/parse_failure_rate") == 1.0 and metric(trainer, "judge/request_failures") == 0
    # training went on: the step's judgements were answered, only unparseable
    args = stub_config(cpu_config, judge_stub, judge_on_failure=on_failure, judge_max_parse_failure_rate=0.5)
    trainer = make_trainer(tiny_model_dir, tiny_processor, synthetic_dataset(4), args)
    with pytest.raises(JudgeUnavailableError, match="answered 4 of 4 judgements without a score that could be parsed"):
        score_one_batch(trainer)


def test_mixed_answers_within_the_allowed_failure_rate(judge_stub, tiny_model_dir, tiny_processor,
                                                       synthetic_dataset, cpu_config):
    judge_stub.fail_after = 3  # the 4th judgement's connection is dropped: 1 of 4 failed = 0.25, not more
    args = stub_config(cpu_config, judge_stub, judge_max_failure_rate=0.25, judge_concurrency=1)
    trainer = make_trainer(tiny_model_dir, tiny_processor, synthetic_dataset(4), args)
    completions, rewards = score_one_batch(trainer)  # no stop: 0.25 is not more than 0.25
    assert metric(trainer, "judge/request_failures") == 1 and metric(trainer, "judge/missing_share") == 0.25
    b = soft_frequency(completions, 4, extractor="last_number")
    # one request at a time, in row order: the last completion's judgement failed and counts as s = 0
    gates = [gate_formula(0.97)] * 3 + [gate_formula(0.0)]
    assert rewards == pytest.approx([min(1.0, x * g) for x, g in zip(b, gates)], abs=1e-6)


@pytest.mark.parametrize(
    "mode, error",
    [
        ("drop", "APIConnectionError: Connection error."),
        ("error", "InternalServerError: Error code: 503"),
        ("not_json", "MalformedResponse: not a chat completion: '<html>502 Bad Gateway</html>'"),
        ("bad_json", "MalformedResponse: JSONDecodeError: Unterminated string"),
        ("slow", "APITimeoutError: Request timed out."),
    ],
)
def test_failing_endpoint_stops_training(mode, error, judge_stub, tiny_model_dir, tiny_processor,
                                         synthetic_dataset, cpu_config):
    judge_stub.mode, judge_stub.delay = mode, 3.0
    args = stub_config(cpu_config, judge_stub, judge_model="stub-judge", judge_timeout=0.5, judge_max_retries=1)
    trainer = make_trainer(tiny_model_dir, tiny_processor, synthetic_dataset(4), args)
    with pytest.raises(JudgeUnavailableError) as raised:
        score_one_batch(trainer)
    message = str(raised.value)
    assert message.startswith(f"The judge at {judge_stub.url} (model stub-judge) failed 4 of 4 judgements after "
                              f"retries (judge_max_failure_rate 0.25); last error: {error}")
    assert message.endswith("while generating step 1; no training step had completed, so there was nothing to save.")
    assert "\n" not in message
    retried = {"drop": 2, "error": 2, "slow": 2, "not_json": 1, "bad_json": 1}[mode]  # a 200 that is not a completion: no retry
    assert len(judge_stub.chat_requests()) == 4 * retried


def test_slow_endpoint_within_the_timeout_works(judge_stub, tiny_model_dir, tiny_processor, synthetic_dataset,
                                                cpu_config):
    judge_stub.mode, judge_stub.delay = "slow", 0.3
    args = stub_config(cpu_config, judge_stub, judge_timeout=5)
    trainer = make_trainer(tiny_model_dir, tiny_processor, synthetic_dataset(4), args)
    score_one_batch(trainer)
    assert metric(trainer, "judge/request_failures") == 0
    assert metric(trainer, "judge/score_mean") == pytest.approx(0.97)
    assert metric(trainer, "judge/request_latency_s") >= 0.3


def test_endpoint_down_at_start(tiny_model_dir, tiny_processor, synthetic_dataset, cpu_config):
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    with pytest.raises(JudgeUnavailableError, match=f"Cannot ask the judge at {url} which model it serves "
                                                    r"\(APIConnectionError: Connection error.\); start the judge"):
        make_trainer(tiny_model_dir, tiny_processor, synthetic_dataset(4),
                     judge_config(cpu_config, judge_backend="openai", judge_base_url=url, judge_max_retries=0))


def test_out_of_range_scores_are_clamped_and_counted(judge_stub, tiny_model_dir, tiny_processor, synthetic_dataset,
                                                     cpu_config):
    judge_stub.score = [1.5, 0.5, -0.2, 0.97]  # one request at a time, in row order
    args = stub_config(cpu_config, judge_stub, judge_concurrency=1)
    trainer = make_trainer(tiny_model_dir, tiny_processor, synthetic_dataset(4), args)
    completions, rewards = score_one_batch(trainer)
    gates = [gate_formula(s) for s in (1.0, 0.5, 0.0, 0.97)]  # clamped to [0, 1]
    b = soft_frequency(completions, 4, extractor="last_number")
    assert rewards == pytest.approx([min(1.0, x * g) for x, g in zip(b, gates)], abs=1e-6)
    assert metric(trainer, "judge/out_of_range_share") == 0.5
    assert metric(trainer, "judge/score_mean") == pytest.approx((1.0 + 0.5 + 0.0 + 0.97) / 4)


def test_requests_in_flight_stay_within_the_pool_which_closes_when_training_ends(
        judge_stub, tiny_model_dir, tiny_processor, synthetic_dataset, cpu_config):
    judge_stub.mode, judge_stub.delay = "slow", 0.2  # 8 requests per step, 2 at a time
    args = stub_config(cpu_config, judge_stub, judge_model="stub-judge", judge_concurrency=2, judge_repeats=2)
    trainer = make_trainer(tiny_model_dir, tiny_processor, synthetic_dataset(8), args)
    backend = trainer.reward_input_providers["judge_scores"].backend
    pool = backend.pool
    trainer.train()
    assert len(judge_stub.chat_requests()) == 16
    assert judge_stub.peak_in_flight == 2
    assert len(pool._threads) == 2 and not any(t.is_alive() for t in pool._threads)  # closed at the end
    assert [e["judge/score_mean"] for e in trainer.state.log_history if "judge/score_mean" in e] == [
        pytest.approx(0.97)] * 2
    score_one_batch(trainer)  # judging again afterwards (e.g. `trainer.evaluate()`) opens a new pool
    assert metric(trainer, "judge/score_mean") == pytest.approx(0.97) and len(judge_stub.chat_requests()) == 24


def test_flaky_endpoint_recovers_with_retries(judge_stub, tiny_model_dir, tiny_processor, synthetic_dataset,
                                              cpu_config):
    judge_stub.mode = "flaky"  # every request: 503 first, a score on its retry
    args = stub_config(cpu_config, judge_stub, judge_model="stub-judge", judge_max_retries=1)
    trainer = make_trainer(tiny_model_dir, tiny_processor, synthetic_dataset(4), args)
    completions, rewards = score_one_batch(trainer)
    assert sorted(r["headers"]["x-stainless-retry-count"] for r in judge_stub.chat_requests()) == ["0"] * 4 + ["1"] * 4
    assert metric(trainer, "judge/request_failures") == 0
    expected = [b * gate_formula(0.97) for b in soft_frequency(completions, 4, extractor="last_number")]
    assert rewards == pytest.approx([min(1.0, r) for r in expected], abs=1e-6)
    assert metric(trainer, "judge/score_mean") == pytest.approx(0.97)


def test_api_key_echoed_by_the_endpoint_never_reaches_errors_or_logs(judge_stub, monkeypatch, tiny_model_dir,
                                                                     tiny_processor, synthetic_dataset, cpu_config,
                                                                     caplog):
    secret = "sk-echoed-secret-77"
    monkeypatch.setenv("MY_JUDGE_KEY", secret)
    judge_stub.mode = "unauthorized"
    args = stub_config(cpu_config, judge_stub, judge_model="stub-judge", judge_api_key_env="MY_JUDGE_KEY",
                       judge_max_retries=2)
    trainer = make_trainer(tiny_model_dir, tiny_processor, synthetic_dataset(4), args)
    with caplog.at_level("DEBUG"), pytest.raises(JudgeUnavailableError) as raised:
        score_one_batch(trainer)
    message = str(raised.value)
    assert {r["headers"]["authorization"] for r in judge_stub.chat_requests()} == {f"Bearer {secret}"}
    assert len(judge_stub.chat_requests()) == 4  # a 401 is not retried
    assert ("failed 4 of 4 judgements after retries (judge_max_failure_rate 0.25); last error: AuthenticationError: "
            "Error code: 401 - invalid key in Bearer ***, while generating step 1") in message
    assert secret not in message
    assert caplog.records and secret not in caplog.text


def test_garbage_answers_stop_the_run_under_the_default_limit(judge_stub, tiny_model_dir, tiny_processor,
                                                              synthetic_dataset, cpu_config):
    """An endpoint that answers 200 with text holding no score (the wrong model or template) stops the run under
    the default judge_max_parse_failure_rate, after saving the last completed step."""
    judge_stub.fail_after, judge_stub.then = 4, "garbage"  # step 1 is scored, then nothing parses
    args = stub_config(cpu_config, judge_stub, judge_model="stub-judge", parse_limit={}, max_steps=3)
    assert args.judge_max_parse_failure_rate == 0.9
    trainer = make_trainer(tiny_model_dir, tiny_processor, synthetic_dataset(8), args)
    with pytest.raises(JudgeUnavailableError) as raised:
        trainer.train()
    checkpoint = Path(args.output_dir) / "checkpoint-1"
    assert str(raised.value) == (
        f"The judge at {judge_stub.url} (model stub-judge) answered 4 of 4 judgements without a score that could be "
        "parsed (judge_max_parse_failure_rate 0.9; check the judge model and prompt template), while generating "
        f"step 2; saved {checkpoint}; resume with --resume_from_checkpoint {checkpoint} once the judge works."
    )
    assert_saved(checkpoint, step=1)


def test_judge_outage_during_evaluation_saves_a_checkpoint(judge_stub, tiny_model_dir, tiny_processor,
                                                           synthetic_dataset, cpu_config):
    """TRL's evaluation generates and scores too: the judge going down there saves the last completed step."""
    judge_stub.fail_after = 4  # step 1's four judgements, then the endpoint is gone (the evaluation after step 1)
    args = stub_config(cpu_config, judge_stub, judge_model="stub-judge", eval_strategy="steps", eval_steps=1,
                       per_device_eval_batch_size=4)
    trainer = make_trainer(tiny_model_dir, tiny_processor, synthetic_dataset(4), args,
                           eval_dataset=synthetic_dataset(1))
    with pytest.raises(JudgeUnavailableError) as raised:
        trainer.train()
    checkpoint = Path(args.output_dir) / "checkpoint-1"
    assert str(raised.value) == (
        f"The judge at {judge_stub.url} (model stub-judge) failed 4 of 4 judgements after retries "
        "(judge_max_failure_rate 0.25); last error: APIConnectionError: Connection error., while evaluating at "
        f"step 1; saved {checkpoint}; resume with --resume_from_checkpoint {checkpoint} once the judge works."
    )
    assert trainer._metrics["eval"]["judge/request_failures"] == [4]
    assert_saved(checkpoint, step=1)


@pytest.mark.slow
def test_cli_endpoint_down_mid_run_saves_a_checkpoint_and_resumes(judge_stub, tmp_path, tiny_model_dir, run, python):
    """The judge goes down after step 1: the CLI saves checkpoint-1, prints one error line and exits 3; the API key
    appears nowhere; once the judge is back, training resumes from the checkpoint and finishes."""
    judge_stub.fail_after = 4  # step 1's four judgements, then the endpoint is gone
    output_dir = tmp_path / "out"
    recipe = tiny_recipe(tmp_path, tiny_model_dir, output_dir, judge_backend="openai", judge_base_url=judge_stub.url)
    secret = "sk-never-print-me-42"
    result = run([python, "-m", "self_evolve_trl.cli", str(recipe)], env={"JUDGE_API_KEY": secret})
    assert result.returncode == 3, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    checkpoint = output_dir / "checkpoint-1"
    assert errors == [
        f"error: The judge at {judge_stub.url} (model stub-judge) failed 4 of 4 judgements after retries "
        "(judge_max_failure_rate 0.25); last error: APIConnectionError: Connection error., while generating step 2; "
        f"saved {checkpoint}; resume with --resume_from_checkpoint {checkpoint} once the judge works."
    ]
    assert secret not in result.stdout + result.stderr
    assert {r["headers"]["authorization"] for r in judge_stub.chat_requests()} == {f"Bearer {secret}"}
    assert_saved(checkpoint, step=1, files=("scheduler.pt", "rng_state.pth"))

    judge_stub.fail_after = None  # the judge is back
    result = run([python, "-m", "self_evolve_trl.cli", str(recipe), "--resume_from_checkpoint", str(checkpoint),
                  "--save_strategy", "steps", "--save_steps", "1"], env={"JUDGE_API_KEY": secret})
    assert result.returncode == 0, result.stderr[-3000:]
    assert secret not in result.stdout + result.stderr
    history = json.loads((output_dir / "checkpoint-3" / "trainer_state.json").read_text())["log_history"]
    judged = [(e["step"], e["judge/score_mean"]) for e in history if "judge/score_mean" in e]
    assert judged == [(1, pytest.approx(0.97)), (2, pytest.approx(0.97)), (3, pytest.approx(0.97))]


@pytest.mark.slow
def test_two_processes_stop_together_and_save_one_checkpoint(judge_stub, tmp_path, tiny_model_dir, run, python):
    """2 processes, one group of 4 split over them: the failure decision uses the totals of both, both stop with the
    same message, and the checkpoint is saved by both together (one RNG state per process)."""
    judge_stub.fail_after = 4
    output_dir = tmp_path / "out"
    recipe = tiny_recipe(tmp_path, tiny_model_dir, output_dir, judge_backend="openai", judge_base_url=judge_stub.url,
                         per_device_train_batch_size=2)
    result = run([python, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
                  "-m", "self_evolve_trl.cli", str(recipe)])
    assert result.returncode != 0
    # each process prints the same line (torchrun may stop the second before it does; their output interleaves)
    errors = {"error: The judge" + line.split("error: The judge", 1)[1] for line in result.stderr.splitlines()
              if "error: The judge" in line}
    assert len(errors) == 1, result.stderr[-3000:]
    assert "failed 4 of 4 judgements after retries" in errors.pop()
    checkpoint = output_dir / "checkpoint-1"
    assert_saved(checkpoint, step=1, files=("rng_state_0.pth", "rng_state_1.pth"))
