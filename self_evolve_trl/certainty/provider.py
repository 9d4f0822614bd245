"""The `token_stats` reward input: per completion, the per-token entropy and self-certainty of the policy's
next-token distributions, for the `self_certainty` and `token_entropy` rewards (docs/math.md, #certainty).

The policy scores its own completions in one no-grad forward pass over prompt + completion, through TRL's own
`GRPOTrainer._get_per_token_logps_and_entropies`: its chunking over the batch and its slicing of the multimodal
inputs (pixel_values, image_grid_thw, ...) per chunk are reused as they are, so the pass runs wherever TRL's own
log-probability pass runs (ZeRO-3, PEFT). TRL's fused LM head returns log-probabilities and entropies but not the
log-sum-exp and mean of the logits that self-certainty needs, so the model handed to TRL's method is `StatsHead`,
which follows the fused head's own path: the language backbone's forward, then the LM head's weight read directly
(gathered for the duration under ZeRO-3, with TRL's `maybe_gather_lm_head_ctx`) and applied to the completion
positions a chunk at a time (`stats.token_stats_from_hidden`), at TRL's sampling temperature. The full logits of a
sequence are never held. (Like the LM head of Qwen models, no logit scaling or soft-capping is applied.)
"""

from __future__ import annotations

import time
from array import array
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from trl.models.utils import disable_gradient_checkpointing
from trl.trainer.utils import maybe_gather_lm_head_ctx, pad

from .reward import ENTROPY, SELF_CERTAINTY
from .stats import token_stats_from_hidden


@dataclass
class StatsOutput:
    """What TRL's `_get_per_token_logps_and_entropies` reads from a model's output: its `log_probs` slot carries the
    self-certainty, its `entropy` slot the entropy."""

    log_probs: torch.Tensor
    entropy: torch.Tensor


class StatsHead:
    """A stand-in for the model in TRL's log-probability pass: called as TRL calls the model
    (`model(**inputs, labels=labels, fused_lm_head=True)`), it runs the language backbone of `model` (the
    `PreTrainedModel` itself, unwrapped from PEFT and DeepSpeed, whose LoRA layers stay in place) and returns the
    per-token self-certainty and entropy of the last `keep` tokens (the completion)."""

    def __init__(self, model, keep: int, temperature: float, chunk_tokens: int):
        self.model, self.keep, self.temperature, self.chunk_tokens = model, keep, temperature, chunk_tokens

    def __call__(self, labels=None, fused_lm_head=None, **model_inputs) -> StatsOutput:
        hidden = self.model.base_model(**model_inputs, use_cache=False).last_hidden_state
        hidden = hidden[:, -(self.keep + 1) : -1]  # the positions that predict the completion tokens
        head = self.model.get_output_embeddings()
        with maybe_gather_lm_head_ctx(head.weight, head.bias):
            entropy, certainty = token_stats_from_hidden(hidden, head.weight, head.bias, self.temperature,
                                                         self.chunk_tokens)
        return StatsOutput(log_probs=certainty, entropy=entropy)


def forward_fields(fields: dict[str, Any], completion_width: int, device) -> dict[str, Any]:
    """The multimodal fields of `_tokenize_prompts`, as model inputs of the padded prompt + completion: tensors as
    they are, per-token fields (Qwen's `mm_token_type_ids`) left-padded like the prompt and extended with zeros over
    the completion."""
    out = {}
    for key, value in fields.items():
        if isinstance(value, torch.Tensor):
            out[key] = value.to(device)
        elif isinstance(value, list) and value and isinstance(value[0], list):
            prompt_part = pad([torch.tensor(x) for x in value], padding_value=0, padding_side="left")
            out[key] = torch.cat([prompt_part, prompt_part.new_zeros(len(value), completion_width)], dim=1).to(device)
        else:
            out[key] = torch.tensor(np.array(value)).to(device)
    return out


class TokenStatsProvider:
    """Computes the `token_stats` reward input: for each completion, `{"self_certainty": [...], "entropy": [...]}`,
    one value per completion token, as float32 arrays (`array("f")`: gathered to the main process as bytes, not as
    pickled Python floats).

    Built once with the trainer; called on every process with that process's rows (every process makes the same
    number of forward passes, as ZeRO-3 needs). Logs `certainty/seconds`, the time of the pass (BENCHMARKS.md has
    its measured share of a step).
    """

    def __init__(self, trainer):
        self.trainer = trainer
        args = trainer.args
        self.batch_size = args.certainty_batch_size
        self.chunk_tokens = args.certainty_chunk_tokens

    def inputs(self, prompts: list, completion_ids_list: list[list[int]]):
        """The padded prompt + completion ids, attention mask, multimodal model inputs and image counts."""
        trainer = self.trainer
        device = trainer.accelerator.device
        prompt_ids, images, fields = trainer._tokenize_prompts(prompts)
        pad_id = trainer._tokenizer.pad_token_id
        prompts_t = [torch.tensor(list(ids)) for ids in prompt_ids]
        completions_t = [torch.tensor(list(ids), dtype=torch.long) for ids in completion_ids_list]
        prompt = pad(prompts_t, padding_value=pad_id, padding_side="left")
        prompt_mask = pad([torch.ones_like(t) for t in prompts_t], padding_value=0, padding_side="left")
        completion = pad(completions_t, padding_value=pad_id, padding_side="right")
        completion_mask = pad([torch.ones_like(t) for t in completions_t], padding_value=0, padding_side="right")
        ids = torch.cat([prompt, completion], dim=1).to(device)
        mask = torch.cat([prompt_mask, completion_mask], dim=1).to(device)
        num_images = [len(x) if x else 0 for x in images] if images is not None else None
        return ids, mask, forward_fields(fields, completion.size(1), device), num_images

    def __call__(self, inputs, prompts, completions, completion_ids_list) -> list[dict[str, array]]:
        start = time.perf_counter()
        trainer = self.trainer
        keep = max((len(ids) for ids in completion_ids_list), default=0)
        if keep == 0:
            return [{SELF_CERTAINTY: array("f"), ENTROPY: array("f")} for _ in completion_ids_list]
        ids, mask, fields, num_images = self.inputs(prompts, completion_ids_list)
        mode_batch = (trainer.args.per_device_train_batch_size if trainer.model.training
                      else trainer.args.per_device_eval_batch_size)
        model = trainer.accelerator.unwrap_model(trainer.model)
        model = model.get_base_model() if hasattr(model, "get_base_model") else model  # PEFT: LoRA layers in place
        head = StatsHead(model, keep, trainer.temperature, self.chunk_tokens)
        with torch.no_grad(), disable_gradient_checkpointing(trainer.model, trainer.args.gradient_checkpointing_kwargs):
            certainty, entropy, _ = trainer._get_per_token_logps_and_entropies(
                head, ids, mask, keep, batch_size=self.batch_size or mode_batch, compute_entropy=True,
                num_images=num_images, **fields,
            )
        certainty, entropy = certainty.float().cpu(), entropy.float().cpu()
        stats = [
            {SELF_CERTAINTY: array("f", certainty[i, : len(c)].tolist()),
             ENTROPY: array("f", entropy[i, : len(c)].tolist())}
            for i, c in enumerate(completion_ids_list)
        ]
        trainer._log_metric("certainty/seconds", time.perf_counter() - start)
        return stats
