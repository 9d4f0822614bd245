"""Colocate mode with a real vLLM engine in the training process (vLLM's CPU platform here).

On the CPU the weights reach the engine through its `reload_weights` (TRL's tensor-by-tensor `load_weights` cannot
fill the CPU's prepacked linear layers). TRL builds the colocated engine without a dtype, so vLLM picks bfloat16 on
the CPU for the float32 tiny model: the logprob check uses a bfloat16 tolerance.
"""

import numpy as np
import pytest
import torch


pytestmark = pytest.mark.vllm

PROBE_PROMPT = "<|im_start|>user\nHow many red cells?<|im_end|>\n<|im_start|>assistant\n"
PROBE_COMPLETION = "<think>two</think> \\boxed{2}<|im_end|>"
BF16_ATOL = 0.08  # logprobs of a bfloat16 engine against the float32 trainer


def engine_logprobs(llm, ids: list[int], prompt_length: int) -> torch.Tensor:
    from vllm import SamplingParams, TokensPrompt

    (output,) = llm.generate(TokensPrompt(prompt_token_ids=ids), SamplingParams(max_tokens=1, prompt_logprobs=1),
                             use_tqdm=False)
    return torch.tensor([output.prompt_logprobs[i][ids[i]].logprob for i in range(prompt_length, len(ids))])


def trainer_logprobs(model, ids: list[int], prompt_length: int) -> torch.Tensor:
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0, prompt_length - 1 : -1].float()
    return logits.log_softmax(-1).gather(-1, torch.tensor(ids[prompt_length:])[:, None])[:, 0]


def record_engine_inputs(llm) -> list[list[dict]]:
    """The prompts (token ids and images) of every `llm.generate` call, copied as they reach the engine."""
    calls, generate = [], llm.generate

    def recording(prompts, *args, **kwargs):
        if not isinstance(prompts, list) or not isinstance(prompts[0], dict):  # e.g. the logprob probe
            return generate(prompts, *args, **kwargs)
        calls.append([{"ids": list(p["prompt_token_ids"]),
                       "image": np.asarray(p["multi_modal_data"]["image"]).copy() if "multi_modal_data" in p else None}
                      for p in prompts])
        return generate(prompts, *args, **kwargs)

    llm.generate = recording
    return calls


def test_lora_colocate_syncs_through_reload_weights(vllm_env, tiny_vllm_model_dir, synthetic_dataset, cpu_config):
    """The LoRA recipe's shape (`use_peft`, `vllm_mode: colocate`), 3 steps, with CSRS re-inference (VSP on): after
    each sync the engine scores like the trainer's merged model, and its scores move with training; the re-inference
    prompts reach the engine with perturbed images."""
    from peft import LoraConfig
    from transformers import AutoProcessor

    from self_evolve_trl.training.trainer import SelfEvolveGRPOTrainer

    processor = AutoProcessor.from_pretrained(tiny_vllm_model_dir, padding_side="left")
    config = cpu_config(use_vllm=True, vllm_mode="colocate", reward_funcs=["soft_frequency", "retrace_frequency"],
                        advantage="lse", max_steps=3, max_completion_length=16, learning_rate=0.05,
                        retrace_samples_per_anchor=2, retrace_visual_perturbation=True)
    lora = LoraConfig(r=8, lora_alpha=16, target_modules=r".*language_model.*\.(q_proj|v_proj|up_proj|down_proj)",
                      task_type="CAUSAL_LM")
    trainer = SelfEvolveGRPOTrainer(model=tiny_vllm_model_dir, processing_class=processor, args=config,
                                    train_dataset=synthetic_dataset(8), peft_config=lora)
    prompt = processor.tokenizer.encode(PROBE_PROMPT)
    ids = prompt + processor.tokenizer.encode(PROBE_COMPLETION)
    generation, records = trainer.vllm_generation, []
    sync = generation.sync_weights

    def sync_and_probe():
        sync()
        records.append((engine_logprobs(generation.llm, ids, len(prompt)), trainer_logprobs(trainer.model, ids, len(prompt))))

    generation.sync_weights = sync_and_probe
    engine_calls = record_engine_inputs(generation.llm)
    trainer.train()

    assert len(records) == 3
    for served, local in records:
        assert torch.allclose(served, local, atol=BF16_ATOL), (served - local).abs().max()
    # LoRA starts as a no-op (B = 0): the first sync is the base; later ones carry the trained adapters
    assert (records[-1][1] - records[0][1]).abs().max() > 4 * BF16_ATOL
    assert (records[-1][0] - records[0][0]).abs().max() > 4 * BF16_ATOL

    # per step: the rollout (G rows of one prompt), then the re-inference (4 completions x anchors x K rows)
    anchors = len(config.retrace_anchors)
    assert [len(call) for call in engine_calls] == [4, 4 * anchors * 2] * 3
    for rollout, retrace in zip(engine_calls[::2], engine_calls[1::2]):
        clean = rollout[0]["image"]
        assert all(row["image"].shape == clean.shape and not np.array_equal(row["image"], clean) for row in retrace)
    assert all(entry["rewards/retrace_frequency/mean"] is not None for entry in trainer.state.log_history[:3])
