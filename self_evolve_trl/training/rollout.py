"""The reproducible rollout (`reproducible_generation`): TRL's `rollout_func` that samples every completion on its own
seed, so that rollouts do not depend on the number of processes."""

from __future__ import annotations

import torch

from ..seeds import generation_batch, rollout_seed


def reproducible_rollout(prompts: list, trainer) -> dict[str, list]:
    """TRL `rollout_func`: every completion generated on its own, seeded by (seed, step, generation batch, index).

    The completions then do not depend on how rows are spread over processes. The generation batches of one step
    (several when `steps_per_generation` < `gradient_accumulation_steps`, and evaluation's) are numbered, so that
    none shares another's seeds (`seeds.generation_batch`). Uses the trainer's own tokenisation and transformers
    generation, one row at a time.
    """
    batch = generation_batch(trainer, "rollout")
    rank_offset = trainer.accelerator.process_index * len(prompts)
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    all_prompt_ids, all_completion_ids = [], []
    for i, prompt in enumerate(prompts):
        prompt_ids, images, multimodal_fields = trainer._tokenize_prompts([prompt])
        seed = rollout_seed(trainer.args.seed, trainer.state.global_step, rank_offset + i, batch)
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            completion_ids, _ = trainer._generate_single_turn(prompt_ids, images, multimodal_fields, 1)
        all_prompt_ids.extend(prompt_ids)
        all_completion_ids.extend(completion_ids)
    return {"prompt_ids": all_prompt_ids, "completion_ids": all_completion_ids, "logprobs": None}
