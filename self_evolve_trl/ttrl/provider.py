"""TTRL's extra votes: M more samples of each prompt, drawn during the rollout only to vote.

After the G completions of a prompt are generated and before rewards, the policy samples M more completions of the
same prompt with the same sampler and backend. They reach the `ttrl_vote` reward (as the `vote_completions` input)
and nothing else: no loss is taken on them. The method is written out in docs/math.md, section "TTRL".

The M samples of a prompt are drawn once per prompt, spread over its G completions: completion r of a group (r = its
global row index mod G) draws the prompt's samples r·M/G … (r+1)·M/G − 1, and the reward votes with all of its
group's shares together. A group may be split across processes (TRL keeps the G copies contiguous, not on one
process), and every process draws as many samples as the others, which TRL's collective vLLM server generation needs.

Generation goes through the trainer's own backend, with CSRS's helpers (`csrs.provider.sample_batched`, one call for
all of a process's samples; `sample_seeded`). With `reproducible_generation`, sample m of group q is drawn on its own
with a seed made of (seed, step, q, m, generation batch), so the votes do not depend on how rows are spread over
processes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from ..csrs.provider import sample_batched, sample_seeded
from ..seeds import generation_batch, torch_seed

# Marks the seeds of the extra votes apart from the judge's (3) and CSRS's (1); never 0 (see `seeds.batch_entropy`).
VOTE_STREAM = 4


@dataclass
class VoteRequest:
    """The extra samples that completion `index` (on this process) draws: samples `first` … `first` + share − 1 of
    group `group` (over all processes). `prompt_ids`, `images` and `fields` are its prompt, as
    `GRPOTrainer._tokenize_prompts` returns them."""

    index: int
    group: int
    first: int
    prompt_ids: list[int]
    images: list | None
    fields: dict[str, Any]


class VoteSampleProvider:
    """Computes the `vote_completions` reward input: for each completion, its share (M / G texts) of its prompt's M
    extra samples.

    Built once with the trainer; called on every process with that process's rows, once per generation batch. Logs
    `ttrl/seconds` (time spent drawing the extra samples) and `ttrl/completion_length` (their mean length in tokens).
    """

    def __init__(self, trainer):
        self.trainer = trainer
        self.samples = trainer.args.vote_samples
        self.reproducible = getattr(trainer.args, "reproducible_generation", False)
        self.batch: tuple[int, ...] = ()  # `seeds.batch_entropy` of the current generation batch

    @property
    def group_size(self) -> int:
        trainer = self.trainer
        return trainer.num_generations if trainer.model.training else trainer.num_generations_eval

    def share(self) -> int:
        """M / G: the extra samples each completion draws."""
        if self.samples % self.group_size:
            raise ValueError(f"vote_samples ({self.samples}) must be a multiple of the group size "
                             f"({self.group_size}).")
        return self.samples // self.group_size

    def requests(self, prompts: list) -> list[VoteRequest]:
        """The prompts of this process's completions, each with the numbers of the samples it draws."""
        trainer, size, share = self.trainer, self.group_size, self.share()
        offset = trainer.accelerator.process_index * len(prompts)
        requests = []
        for i, prompt in enumerate(prompts):
            prompt_ids, images, fields = trainer._tokenize_prompts([prompt])
            group, position = divmod(offset + i, size)
            requests.append(VoteRequest(i, group, position * share, list(prompt_ids[0]),
                                        images[0] if images else None, fields))
        return requests

    def generate(self, requests: list[VoteRequest]) -> list[list[list[int]]]:
        """Each request's share of samples (token ids), with the trainer's sampler and backend."""
        share = self.share()
        if not self.reproducible:
            return sample_batched(self.trainer, requests, share)
        seed, step = self.trainer.args.seed, self.trainer.state.global_step

        def seeds(r: VoteRequest) -> list[int]:
            return [torch_seed([seed, step, r.group, r.first + s, VOTE_STREAM, *self.batch]) for s in range(share)]

        return [sample_seeded(self.trainer, r, seeds(r)) for r in requests]

    def __call__(self, inputs, prompts, completions, completion_ids_list) -> list[list[str]]:
        if not self.samples:
            return [[] for _ in prompts]
        start = time.perf_counter()
        self.batch = generation_batch(self.trainer, "vote")
        generated = self.generate(self.requests(prompts))
        tokenizer = self.trainer._tokenizer
        texts = [[tokenizer.decode(ids, skip_special_tokens=True) for ids in samples] for samples in generated]
        lengths = [len(ids) for samples in generated for ids in samples]
        log = self.trainer._log_metric
        log("ttrl/seconds", time.perf_counter() - start)
        log("ttrl/completion_length", sum(lengths) / max(1, len(lengths)))
        return texts
