"""Actor–Judge backends: the `reference` judge in process (frozen copy, TRL's reference model, the LoRA base model;
batched and per-seed generation; under DeepSpeed ZeRO-3) and the `openai` backend against `transformers serve`
running the tiny Qwen2.5-VL (a real OpenAI-compatible server; the tiny model's random text never holds a score)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from self_evolve_trl.judge.prompt import JudgeTemplate
from self_evolve_trl.rewards import get_reward_function
from self_evolve_trl.rewards.consistency import soft_frequency
from self_evolve_trl.rewards.judge import parse_judge_score
from self_evolve_trl.seeds import judge_seed
from tests.judge.judge_helpers import (
    free_port,
    gate_formula,
    judge_config,
    make_trainer,
    metric,
    score_one_batch,
    tiny_recipe,
)


def test_reference_judge_frozen_copy_trains_and_stays_frozen(tiny_model_dir, tiny_processor, synthetic_dataset,
                                                             cpu_config):
    from transformers import AutoModelForImageTextToText

    def varied(completion_ids, **kwargs):  # a reward that differs between completions, so the policy must move
        return [sum(ids) % 7 / 7 for ids in completion_ids]

    args = judge_config(cpu_config, beta=0.0, judge_repeats=2)
    judge_reward = get_reward_function("judge_modulated", **args.reward_kwargs["judge_modulated"])
    trainer = make_trainer(tiny_model_dir, tiny_processor, synthetic_dataset(8), args,
                           reward_funcs=[judge_reward, varied])
    backend = trainer.reward_input_providers["judge_scores"].backend
    assert backend.source == "frozen_copy" and trainer.ref_model is None
    initial = AutoModelForImageTextToText.from_pretrained(tiny_model_dir).state_dict()
    trainer.train()

    judge_weights = backend.frozen_model.state_dict()
    assert all(torch.equal(judge_weights[k], initial[k]) for k in initial)
    policy = trainer.model.state_dict()
    assert any(not torch.equal(policy[k], initial[k]) for k in initial)  # the policy trained, the judge did not
    steps = [e for e in trainer.state.log_history if "judge/samples" in e]
    assert len(steps) == 2
    for entry in steps:
        assert entry["judge/samples"] == 8  # 4 completions x 2 repeats
        assert entry["judge/request_failures"] == 0
        assert entry["judge/parse_failure_rate"] == 1.0  # random weights never write a score
        assert entry["judge/gate_mean"] == pytest.approx(gate_formula(0.0), abs=1e-6)  # on_failure zero
        assert entry["judge/suppressed_share"] == 1.0 and entry["judge/latency_s"] > 0
    # the rewards of a fresh batch: b · g(0)
    completions, rewards = score_one_batch(trainer)
    expected = [b * gate_formula(0.0) for b in soft_frequency(completions, 4, extractor="last_number")]
    assert rewards == pytest.approx(expected, abs=1e-6)


def test_reference_judge_is_trl_ref_model_when_beta_positive(tiny_model_dir, tiny_processor, synthetic_dataset,
                                                             cpu_config):
    args = judge_config(cpu_config, beta=0.1, judge_on_failure="neutral")
    trainer = make_trainer(tiny_model_dir, tiny_processor, synthetic_dataset(4), args)
    backend = trainer.reward_input_providers["judge_scores"].backend
    assert backend.source == "ref_model" and backend.frozen_model is trainer.ref_model
    completions, rewards = score_one_batch(trainer)
    assert rewards == pytest.approx(soft_frequency(completions, 4, extractor="last_number"))  # neutral: gate 1
    assert metric(trainer, "judge/samples") == 4 and metric(trainer, "judge/gate_mean") == 1.0


def test_reference_judge_with_lora_is_the_base_model(tiny_model_dir, tiny_processor, synthetic_dataset, cpu_config):
    from peft import LoraConfig
    from transformers import AutoModelForImageTextToText

    args = judge_config(cpu_config, max_steps=2, learning_rate=0.5, beta=0.0)
    trainer = make_trainer(tiny_model_dir, tiny_processor, synthetic_dataset(4), args,
                           peft_config=LoraConfig(r=4, target_modules=["q_proj", "v_proj"], lora_dropout=0.0))
    backend = trainer.reward_input_providers["judge_scores"].backend
    assert backend.source == "peft_base"
    trainer.train()
    ids = torch.tensor([[5, 17, 42, 99, 7, 3]])
    base = AutoModelForImageTextToText.from_pretrained(tiny_model_dir).eval()
    with torch.no_grad():
        expected = base(input_ids=ids).logits
        trainer.model.eval()
        adapted = trainer.model(input_ids=ids).logits
        with backend.model() as judge_model:
            judged = judge_model(input_ids=ids).logits
    assert torch.allclose(judged, expected, atol=1e-5)
    assert not torch.allclose(adapted, expected, atol=1e-3)  # the adapter did train
    assert [e["judge/samples"] for e in trainer.state.log_history if "judge/samples" in e] == [4, 4]


def varied_reward(completion_ids, **kwargs):
    """A reward that differs between completions, so that the policy must move."""
    return [sum(ids) % 7 / 7 for ids in completion_ids]


def test_reference_judge_with_sync_ref_model_is_a_frozen_copy(tiny_model_dir, tiny_processor, synthetic_dataset,
                                                              cpu_config, capsys):
    """With `sync_ref_model`, TRL blends the policy into its reference model; the judge must stay the initial
    policy (never updated), so it is a frozen copy of its own."""
    from transformers import AutoModelForImageTextToText

    args = judge_config(cpu_config, beta=0.1, sync_ref_model=True, ref_model_sync_steps=1, ref_model_mixup_alpha=1.0)
    judge_reward = get_reward_function("judge_modulated", **args.reward_kwargs["judge_modulated"])
    trainer = make_trainer(tiny_model_dir, tiny_processor, synthetic_dataset(8), args,
                           reward_funcs=[judge_reward, varied_reward])
    backend = trainer.reward_input_providers["judge_scores"].backend
    assert backend.source == "frozen_copy" and trainer.ref_model is not None
    assert backend.frozen_model is not trainer.ref_model
    assert ("Judge: 'reference' (a frozen copy of the initial model, since sync_ref_model updates TRL's reference "
            "model)") in capsys.readouterr().out
    initial = AutoModelForImageTextToText.from_pretrained(tiny_model_dir).state_dict()
    trainer.train()

    synced = trainer.ref_model.state_dict()
    assert any(not torch.equal(synced[k], initial[k]) for k in initial)  # TRL's reference model moved
    judge_weights = backend.frozen_model.state_dict()
    assert all(torch.equal(judge_weights[k], initial[k]) for k in initial)  # the judge did not
    assert [e["judge/samples"] for e in trainer.state.log_history if "judge/samples" in e] == [4, 4]


def test_reference_judge_batches_its_generate_calls_and_its_scores_reach_the_rewards(
        tiny_model_dir, tiny_processor, synthetic_dataset, cpu_config, monkeypatch):
    """The frozen judge's `generate` answers `\\boxed{0.97}` (the real processor builds its inputs, the real
    tokenizer decodes its output): 4 completions x 3 repeats in ceil(12 / 5) = 3 batched calls, each prompt holding
    the image, the rubric, the question and the completion, and the parsed scores gate the rewards."""
    args = judge_config(cpu_config, beta=0.0, judge_repeats=3, judge_batch_size=5, parse_limit={})
    trainer = make_trainer(tiny_model_dir, tiny_processor, synthetic_dataset(4), args)
    provider = trainer.reward_input_providers["judge_scores"]
    backend = provider.backend
    tokenizer = tiny_processor.tokenizer
    answer = tokenizer("\\boxed{0.97}", add_special_tokens=False, return_tensors="pt").input_ids
    calls = []

    def generate(input_ids, generation_config, **kwargs):
        calls.append({"input_ids": input_ids, "generation_config": generation_config, **kwargs})
        return torch.cat([input_ids, answer.expand(input_ids.size(0), -1)], dim=1)

    monkeypatch.setattr(backend.frozen_model, "generate", generate)
    completions, rewards = score_one_batch(trainer)

    assert [len(c["input_ids"]) for c in calls] == [5, 5, 2]
    assert all(c["generation_config"].max_new_tokens == 8 for c in calls)
    row = trainer.train_dataset[0]
    question = row["prompt"][0]["content"][-1]["text"]
    prompts = [tokenizer.decode(ids) for c in calls for ids in c["input_ids"]]
    for i, prompt in enumerate(prompts):
        assert prompt.count("<|vision_start|>") == 1 and "<|image_pad|>" in prompt  # the image
        assert provider.template.system in prompt  # the rubric
        assert f"[PROBLEM]\n{question}\n[END PROBLEM]" in prompt
        assert f"[CANDIDATE_SOLUTION]\n{completions[i // 3]}\n[END CANDIDATE_SOLUTION]" in prompt  # 3 repeats each
    for call in calls:  # one image per prompt
        assert call["image_grid_thw"].shape[0] == len(call["input_ids"]) and call["pixel_values"].numel() > 0

    expected = [b * gate_formula(0.97) for b in soft_frequency(completions, 4, extractor="last_number")]
    assert rewards == pytest.approx(expected, abs=1e-6)
    assert metric(trainer, "judge/samples") == 12 and metric(trainer, "judge/parse_failure_rate") == 0.0
    assert metric(trainer, "judge/score_mean") == pytest.approx(0.97)
    assert metric(trainer, "judge/out_of_range_share") == 0.0


@pytest.fixture(scope="session")
def transformers_server(tiny_model_dir, tmp_path_factory):
    """`transformers serve` of the tiny Qwen2.5-VL on loopback (a real OpenAI-compatible chat-completions server)."""
    yield from transformers_serve(tiny_model_dir, tmp_path_factory)


@pytest.fixture(scope="session")
def scoring_server(scoring_model_dir, tmp_path_factory):
    """`transformers serve` of the scoring model (it writes `\\boxed{0.d}`, d sampled)."""
    yield from transformers_serve(scoring_model_dir, tmp_path_factory)


def transformers_serve(model_dir, tmp_path_factory):
    """Start `transformers serve` of a model on loopback, yield its URL once it answers, then stop it."""
    pytest.importorskip("fastapi", reason="`transformers serve` needs transformers[serving] (the test extra)")
    import openai

    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "transformers.cli.transformers", "serve", model_dir, "--host", "127.0.0.1",
             "--port", str(port), "--device", "cpu"],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
    url = f"http://127.0.0.1:{port}/v1"
    client = openai.OpenAI(base_url=url, api_key="x", max_retries=0, timeout=30)
    deadline = time.time() + 180
    while True:
        try:
            client.chat.completions.create(model=model_dir, messages=[{"role": "user", "content": "hi"}],
                                           max_tokens=2)
            break
        except openai.APIConnectionError:
            if process.poll() is not None or time.time() > deadline:
                process.kill()
                pytest.fail(f"transformers serve did not start: {log.read_text()[-2000:]}")
            time.sleep(0.5)
    yield url
    process.terminate()
    process.wait(timeout=30)


def test_openai_backend_trains_against_transformers_serve(transformers_server, tiny_model_dir, tiny_processor,
                                                          synthetic_dataset, cpu_config):
    args = judge_config(cpu_config, judge_backend="openai", judge_base_url=transformers_server,
                        judge_model=tiny_model_dir, judge_on_failure="neutral", judge_timeout=60, judge_concurrency=2)
    trainer = make_trainer(tiny_model_dir, tiny_processor, synthetic_dataset(8), args)
    trainer.train()
    steps = [e for e in trainer.state.log_history if "judge/samples" in e]
    assert len(steps) == 2
    for entry in steps:
        assert entry["judge/samples"] == 4 and entry["judge/request_failures"] == 0
        assert entry["judge/parse_failure_rate"] == 1.0  # the server answered; the tiny model's text has no score
        assert entry["judge/request_latency_s"] > 0
        assert entry["judge/gate_mean"] == 1.0 and entry["judge/missing_share"] == 1.0  # neutral


def test_reference_judgement_does_not_depend_on_its_batch(scoring_model_dir, synthetic_dataset, cpu_config):
    """With reproducible_generation, the reference judge generates each judgement alone on its seed: a judgement
    comes out the same judged alone (after any use of torch's RNG), as the second of two, or in a batch of six."""
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(scoring_model_dir, padding_side="left")
    args = judge_config(cpu_config, beta=0.0, reproducible_generation=True, judge_batch_size=6, parse_limit={})
    trainer = make_trainer(scoring_model_dir, processor, synthetic_dataset(4), args)
    provider = trainer.reward_input_providers["judge_scores"]
    rows = [trainer.train_dataset[i] for i in range(3)]
    requests = provider.requests(rows, [row["prompt"] for row in rows], ["\\boxed{1}", "\\boxed{2}", "x"]) * 2
    seeds = [judge_seed(0, 0, i, 0) for i in range(6)]

    together = [output.text for output in provider.backend.judge(requests, seeds)]
    alone = []
    for n, (request, seed) in enumerate(zip(requests, seeds)):
        torch.manual_seed(100 + n)
        alone.append(provider.backend.judge([request], [seed])[0].text)
    assert together == alone
    pair = provider.backend.judge(requests[:2], seeds[:2])
    assert [output.text for output in pair] == together[:2]
    assert all(parse_judge_score(text) is not None for text in together)  # the scoring model writes \\boxed{0.d}
    assert len(set(together)) > 1  # ... with d drawn from each seed


def test_transformers_serve_samples_with_the_seed_of_each_request(scoring_server, scoring_model_dir):
    """A real server honours the `seed` each request carries: the same judgements with the same seeds give the same
    answers, in another order too, and other seeds other answers."""
    from self_evolve_trl.judge.backends.openai import OpenAIJudge

    judge = OpenAIJudge(scoring_server, scoring_model_dir, max_tokens=8, timeout=60, max_retries=0, concurrency=1)
    template = JudgeTemplate.load()
    requests = [template.request("What is 2 + 2?", f"\\boxed{{{n}}}") for n in range(6)]
    seeds = [judge_seed(0, 0, i, 0) for i in range(6)]
    try:
        first = [output.text for output in judge.judge(requests, seeds)]
        again = [output.text for output in judge.judge(requests[::-1], seeds[::-1])][::-1]
        other = [output.text for output in judge.judge(requests, [judge_seed(1, 0, i, 0) for i in range(6)])]
    finally:
        judge.close()
    scores = [parse_judge_score(text) for text in first]
    assert all(score is not None for score in scores) and len(set(scores)) > 1
    assert again == first
    assert other != first


def test_unreachable_host_fails_within_the_connect_limit(monkeypatch):
    """A host that never completes the TCP handshake (here: a listening socket whose accept queue is full, so the
    kernel drops further SYNs) fails after the connect limit, not after the whole judge_timeout."""
    import openai

    from self_evolve_trl.judge.backends import openai as openai_backend
    from self_evolve_trl.judge.prompt import JudgeRequest

    assert openai_backend.OpenAIJudge("http://127.0.0.1:9/v1", model="m", timeout=120).client.timeout == openai.Timeout(
        120, connect=10.0)
    assert openai_backend.OpenAIJudge("http://127.0.0.1:9/v1", model="m", timeout=3).client.timeout == openai.Timeout(3)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        fillers = []
        for _ in range(8):  # fill the accept queue until a connection attempt hangs
            filler = socket.socket()
            filler.settimeout(0.3)
            fillers.append(filler)
            try:
                filler.connect(server.getsockname())
            except TimeoutError:
                break
        else:
            pytest.fail("the accept queue never filled")
        monkeypatch.setattr(openai_backend, "CONNECT_TIMEOUT", 1.0)
        host, port = server.getsockname()
        judge = openai_backend.OpenAIJudge(f"http://{host}:{port}/v1", model="m", timeout=60, max_retries=0)
        start = time.perf_counter()
        (output,) = judge.judge([JudgeRequest(system="", text="hi")])
        elapsed = time.perf_counter() - start
        judge.close()
        for filler in fillers:
            filler.close()
    assert output.text is None and output.error == "APITimeoutError: Request timed out."
    assert 0.9 < elapsed < 10  # about the 1 s connect limit, far below the 60 s judge_timeout


def flags_id(flags):
    return "peft_base" if "--use_peft" in flags else {"0.0": "frozen_copy", "0.1": "ref_model"}[flags[1]]


@pytest.mark.slow
@pytest.mark.parametrize(
    "flags",
    [["--beta", "0.0"], ["--beta", "0.1"], ["--use_peft", "true", "--lora_target_modules", "q_proj", "v_proj"]],
    ids=["frozen_copy", "ref_model", "peft_base"],
)
def test_reference_judge_under_deepspeed_zero3(flags, tmp_path, tiny_model_dir, run, python):
    """Each source of the in-process judge under DeepSpeed ZeRO-3 (one CPU process; parameters partitioned)."""
    output_dir = tmp_path / "out"
    recipe = tiny_recipe(tmp_path, tiny_model_dir, output_dir, max_steps=2)
    config = Path(__file__).resolve().parents[2] / "accelerate_configs" / "zero3_cpu.yaml"
    result = run([python, "-m", "accelerate.commands.launch", "--config_file", str(config), "-m",
                  "self_evolve_trl.cli", str(recipe), *flags])
    assert result.returncode == 0, result.stderr[-3000:]
    source = {"frozen_copy": "a frozen copy of the initial model", "ref_model": "TRL's reference model",
              "peft_base": "the base model, adapter disabled"}[flags_id(flags)]
    assert f"Judge: 'reference' ({source})" in result.stdout
    summary = json.loads((output_dir / "summary.json").read_text())
    assert summary["steps"] == 2
    assert summary["metrics"]["judge/parse_failure_rate"]["last"] == 1.0  # the tiny judge answered (no score)
    assert summary["metrics"]["judge/request_failure_rate"]["last"] == 0.0
