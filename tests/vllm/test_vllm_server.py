"""vLLM server mode: the recipe's vLLM settings reach TRL's generation object intact.

vLLM cannot run here (CUDA only). This is the one stand-in of the test suite: a recording replacement of TRL's
`VLLMGeneration` class, the boundary between TRL's trainer and the vLLM server. Everything on our side of it (the
recipe, the parser, the config, TRL's trainer and ours, rewards, advantages, the importance-sampling correction with
the returned logprobs, training) runs for real on the tiny model.
"""

from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import pytest

from self_evolve_trl import cli


REPO = Path(__file__).resolve().parents[2]


class RecordingVLLMGeneration:
    """Records how TRL builds and calls its vLLM backend; answers like a server would (ids + logprobs)."""

    instances: list = []

    def __init__(self, model, accelerator, processing_class, **kwargs):
        self.kwargs = kwargs
        self.tokenizer = processing_class.tokenizer
        self.sync_calls = 0
        self.generate_calls = []
        self.vllm_client = SimpleNamespace(get_server_info=lambda: {"model_config": {"logprobs_mode": "processed_logprobs"}})
        RecordingVLLMGeneration.instances.append(self)

    def sync_weights(self):
        self.sync_calls += 1

    def generate(self, prompts, images, num_generations, profiler=None):
        self.generate_calls.append({"n_prompts": len(prompts), "images": images, "num_generations": num_generations})
        eos = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        completions = [self.tokenizer.encode(f"<think>ok</think> \\boxed{{{i % 3}}}") + [eos] for i in range(len(prompts))]
        logprobs = [[[-0.7] for _ in ids] for ids in completions]
        return prompts, completions, logprobs, None


@pytest.mark.parametrize("recipe", ["geoqa.yaml", "mmr1-majority.yaml"])
def test_recipe_vllm_settings_reach_trls_generation(recipe, tmp_path, tiny_model_dir):
    RecordingVLLMGeneration.instances.clear()
    overrides = [
        "--use_cpu", "true", "--bf16", "false", "--gradient_checkpointing", "false", "--dtype", "float32",
        "--model_name_or_path", tiny_model_dir, "--dataset_name", "synthetic", "--synthetic_size", "8",
        "--per_device_train_batch_size", "8" if recipe == "geoqa.yaml" else "10",
        "--steps_per_generation", "1", "--gradient_accumulation_steps", "1",
        "--max_steps", "2", "--save_strategy", "no", "--log_completions", "false", "--output_dir", str(tmp_path),
    ]
    data_args, args, model_args = cli.parse_recipe([str(REPO / "recipes" / recipe), *overrides])
    with mock.patch("trl.trainer.grpo_trainer.VLLMGeneration", RecordingVLLMGeneration):
        trainer = cli.train(data_args, args, model_args)

    (backend,) = RecordingVLLMGeneration.instances
    kw = backend.kwargs
    assert kw["mode"] == "server"
    assert (kw["server_host"], kw["server_port"], kw["server_timeout"]) == ("127.0.0.1", 8000, 600)
    assert kw["server_base_url"] is None and kw["group_port"] == 51216
    assert (kw["temperature"], kw["top_p"], kw["max_completion_length"]) == (args.temperature, args.top_p, 2048)
    assert kw["temperature"] == (1.0 if recipe == "geoqa.yaml" else 0.7)
    # one generation round per step, with the prompts' images, weights pushed before each round
    assert len(backend.generate_calls) == 2 and backend.sync_calls == 2
    call = backend.generate_calls[0]
    assert call["n_prompts"] == args.per_device_train_batch_size and call["num_generations"] == args.num_generations
    # resized the Qwen way within the recipe's pixel bounds before reaching vLLM: the 56 x 56 synthetic images are
    # scaled up to 532 x 532 (19 merged patches of 28 px a side; 532^2 >= min_pixels 262144)
    assert all(len(imgs) == 1 and imgs[0].size == (532, 532) for imgs in call["images"])
    # the server's logprobs went into TRL's importance-sampling correction, and our rewards were computed
    history = [e for e in trainer.state.log_history if "reward" in e]
    assert len(history) == 2
    assert "sampling/importance_sampling_ratio/mean" in history[0]
    assert history[0]["self_consistency/abstention_rate"] == 0.0
