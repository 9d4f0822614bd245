"""CSRS's re-inference ("retrace"): cut each completion at anchor points and let the policy finish it again.

After the G completions of a prompt are generated and before rewards, every completion y_i is cut at each anchor
(a fraction of its length), and the policy samples K new endings from each prefix. The re-inferred texts reach the
`retrace_frequency` reward (as the `retrace_completions` input) and nothing else: no loss is taken on them. The
method is written out in docs/math.md, section "CSRS".

- Prefix length (`prefix.prefix_length`): `actual_length` (the default) cuts at ⌊ρ·L⌋ tokens of the completion's own
  length L; `max_length` (released CSRS) cuts at ⌊ρ·max_completion_length⌋, so a completion shorter than that is
  kept whole, answer included.
- Prompt: `new_turn` (released CSRS) closes the prefix as a finished assistant turn and opens a new assistant turn;
  `continuation` (SCS) appends the prefix tokens to the prompt, so the model continues the same turn.
- VSP (`perturb`): with `retrace_visual_perturbation`, the images of the re-inference prompts (only those) get
  Gaussian noise. The generation batches of one step (several when `steps_per_generation` <
  `gradient_accumulation_steps`, and evaluation's) are numbered by `seeds.generation_batch`, so that none reuses
  another's noise.

Generation goes through the trainer's own backend (`GRPOTrainer._tokenize_prompts` and `_generate_single_turn`):
transformers `generate`, or TRL's vLLM generation, where every process takes part in each call. With
`reproducible_generation`, every re-inference is sampled on its own with a seed made of (seed, step, generation
batch, global completion index, anchor, sample), so the re-inferences do not depend on how completions are spread
over processes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from transformers import TrainerCallback
from trl.data_utils import is_conversational

from ..errors import ConfigError
from ..seeds import generation_batch, torch_seed
from .perturb import add_noise, map_images, noise_generator, noise_level
from .prefix import NEW_TURN_NEEDS_CONVERSATIONS, decode_text, dropped_token_ids, prefix_length, strip_trailing


VSP_NEEDS_IMAGES = (
    "retrace_visual_perturbation adds noise to the prompt images, and this model has no image processor (a text-only "
    "model, with a tokenizer as its processing class): set retrace_visual_perturbation: false."
)

# The seed component after the anchor in the sampling seeds: `perturb.NOISE_STREAM` (0) is the noise's.
SAMPLING_STREAM = 1


@dataclass
class RetraceRequest:
    """One re-inference prompt: completion `index` (on this process; `global_index` over all processes) cut at anchor
    number `anchor`.

    `prompt_ids`, `images` and `fields` are what `GRPOTrainer._tokenize_prompts` returns for one prompt (with the
    prefix already in `prompt_ids` in `continuation` mode); `prefix_ids` are the completion tokens kept.
    """

    index: int
    global_index: int
    anchor: int
    prefix_ids: list[int]
    prompt_ids: list[int]
    images: list | None
    fields: dict[str, Any]


def merge_fields(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-prompt multimodal fields merged as one batched `_tokenize_prompts` call returns them."""
    if not rows or not rows[0]:
        return {}
    return {
        key: torch.cat([row[key] for row in rows]) if isinstance(rows[0][key], torch.Tensor)
        else [item for row in rows for item in row[key]]
        for key in rows[0]
    }


def extend_token_fields(fields: dict[str, Any], prompt_length: int, added: int) -> dict[str, Any]:
    """`fields` of one prompt of `prompt_length` tokens, with its per-token fields (Qwen's `mm_token_type_ids`)
    extended by `added` text tokens.

    Example:

    ```python
    >>> extend_token_fields({"mm_token_type_ids": [[0, 1, 0]], "image_grid_thw": "kept"}, 3, 2)
    {'mm_token_type_ids': [[0, 1, 0, 0, 0]], 'image_grid_thw': 'kept'}

    ```
    """

    def per_token(v) -> bool:
        return isinstance(v, list) and bool(v) and isinstance(v[0], list) and len(v[0]) == prompt_length

    return {key: [list(value[0]) + [0] * added] if per_token(value) else value for key, value in fields.items()}


def sample_batched(trainer, requests: list, k: int, max_rows: int | None = None) -> list[list[list[int]]]:
    """`k` sampled completions (token ids) per request, with the trainer's sampler and backend (`_generate_single_turn`:
    transformers `generate` or TRL's vLLM generation). A request is anything with the `prompt_ids`, `images` and
    `fields` of one prompt (as `GRPOTrainer._tokenize_prompts` returns them), e.g. a `RetraceRequest`.

    Generation calls hold at most `max_rows` rows (rounded down to whole k-blocks, at least one; default: all in one
    call, the fastest). Each prompt is sent k times in a row, so that TRL's vLLM server path sends it once with n = k.
    TRL's vLLM server generation is collective: every process must pass the same number of requests.
    """
    if not requests:
        return []
    per_call = len(requests) if max_rows is None else max(1, max_rows // k)
    outputs = []
    for start in range(0, len(requests), per_call):
        chunk = requests[start : start + per_call]
        prompt_ids = [r.prompt_ids for r in chunk for _ in range(k)]
        images = [r.images for r in chunk for _ in range(k)]
        images = None if all(image is None for image in images) else images
        fields = merge_fields([r.fields for r in chunk for _ in range(k)])
        ids, _ = trainer._generate_single_turn(prompt_ids, images, fields, k)
        outputs += [[list(x) for x in ids[n * k : (n + 1) * k]] for n in range(len(chunk))]
    return outputs


def sample_seeded(trainer, request, seeds: list[int]) -> list[list[int]]:
    """One sampled completion (token ids) of `request` per seed, each generated on its own under `torch.manual_seed`
    (`reproducible_generation`: the samples do not depend on how requests are spread over processes)."""
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    images = None if request.images is None else [request.images]
    samples = []
    for seed in seeds:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            ids, _ = trainer._generate_single_turn([request.prompt_ids], images, request.fields, 1)
        samples.append(list(ids[0]))
    return samples


class RetraceProvider:
    """Computes the `retrace_completions` reward input: K re-inferences per anchor for every completion.

    Built once with the trainer; called on every process with that process's rows, once per generation batch (TRL's
    vLLM server generation is collective, so every process must call it the same number of times). Returns, for each
    completion, its re-inferred texts, anchor by anchor (anchors × K texts). Logs `retrace/*` metrics: seconds,
    tokens generated, prefix length, and (in training) the share of the optimizer step spent re-inferring.
    """

    def __init__(self, trainer):
        self.trainer = trainer
        args = trainer.args
        self.anchors = list(args.retrace_anchors)
        self.anchor_base = args.retrace_anchor_base
        self.mode = args.retrace_mode
        self.samples = args.retrace_samples_per_anchor
        self.visual_perturbation = args.retrace_visual_perturbation
        self.max_level = args.retrace_noise_max_level
        self.max_rows = args.retrace_generation_batch_size
        self.reproducible = getattr(args, "reproducible_generation", False)
        if self.mode == "new_turn":
            check_conversational(trainer)
        if self.visual_perturbation and not getattr(trainer, "_is_vlm", True):
            raise ConfigError(VSP_NEEDS_IMAGES)
        self.dropped_ids = dropped_token_ids(self.tokenizer)
        self.batch: tuple[int, ...] = ()  # `seeds.batch_entropy` of the current generation batch
        self.seconds_this_step = 0.0  # training re-inference seconds of the current optimizer step
        self.noise_levels: list[int] = []  # the VSP levels k drawn for the last batch's re-inference images
        trainer.add_callback(RetraceTimeShare(self))

    @property
    def tokenizer(self):
        return self.trainer._tokenizer

    @property
    def step(self) -> int:
        return self.trainer.state.global_step

    def requests(self, prompts: list, completion_ids_list: list[list[int]]) -> list[RetraceRequest]:
        """The re-inference prompts of this process's completions, completion by completion, anchor by anchor."""
        trainer = self.trainer
        stop_tokens = set(trainer.eos_token_ids) | {self.tokenizer.pad_token_id}
        offset = trainer.accelerator.process_index * len(prompts)
        requests = []
        self.noise_levels = []
        for i, (prompt, completion_ids) in enumerate(zip(prompts, completion_ids_list)):
            ids = strip_trailing(list(completion_ids), stop_tokens)
            for j, anchor in enumerate(self.anchors):
                prefix = ids[: prefix_length(len(ids), anchor, self.anchor_base, trainer.args.max_completion_length)]
                retrace_prompt = self.retrace_prompt(prompt, prefix, offset + i, j)
                prompt_ids, images, fields = trainer._tokenize_prompts([retrace_prompt])
                prompt_ids = list(prompt_ids[0])
                if self.mode == "continuation":
                    fields = extend_token_fields(fields, len(prompt_ids), len(prefix))
                    prompt_ids += prefix
                images = images[0] if images else None
                requests.append(RetraceRequest(i, offset + i, j, prefix, prompt_ids, images, fields))
        return requests

    def retrace_prompt(self, prompt, prefix: list[int], global_index: int, anchor: int):
        """The prompt of one re-inference: `prompt` with its images perturbed (VSP) and, in `new_turn` mode, the
        prefix as a finished assistant turn. (In `continuation` mode the prefix tokens are appended after
        tokenisation.)"""
        if self.visual_perturbation:
            rng = noise_generator(self.trainer.args.seed, self.step, global_index, anchor, self.batch)

            def perturb(image):
                level = noise_level(rng, self.max_level)
                self.noise_levels.append(level)
                return add_noise(image, rng, level)

            prompt = map_images(prompt, perturb)
        if self.mode == "new_turn":
            if not isinstance(prompt, list):
                raise ValueError(NEW_TURN_NEEDS_CONVERSATIONS)
            prefix_text = decode_text(self.tokenizer, prefix, self.dropped_ids)  # `<think>` kept, even if special
            # A string, as text-only chat templates need; TRL makes it a text part for a processor with images.
            prompt = [*prompt, {"role": "assistant", "content": prefix_text}]
        return prompt

    def generate(self, requests: list[RetraceRequest], max_rows: int | None = None) -> list[list[list[int]]]:
        """K sampled completions (token ids) per request, with the trainer's sampler and backend (`sample_batched`,
        or `sample_seeded` per request under `reproducible_generation`)."""
        if self.reproducible:
            return [self.generate_seeded(request) for request in requests]
        return sample_batched(self.trainer, requests, self.samples, max_rows)

    def generate_seeded(self, request: RetraceRequest) -> list[list[int]]:
        """The K samples of one request, each on its own, with a seed of its own (`reproducible_generation`)."""
        seeds = [
            torch_seed([self.trainer.args.seed, self.step, request.global_index, request.anchor, SAMPLING_STREAM, s,
                        *self.batch])
            for s in range(self.samples)
        ]
        return sample_seeded(self.trainer, request, seeds)

    def __call__(self, inputs, prompts, completions, completion_ids_list) -> list[list[str]]:
        start = time.perf_counter()
        self.batch = generation_batch(self.trainer, "retrace")
        requests = self.requests(prompts, completion_ids_list)
        generated = self.generate(requests, max_rows=self.max_rows)
        texts: list[list[str]] = [[] for _ in prompts]
        new_tokens = 0
        for request, samples in zip(requests, generated):
            for ids in samples:
                new_tokens += len(ids)
                full = request.prefix_ids + ids if self.mode == "continuation" else ids
                texts[request.index].append(decode_text(self.tokenizer, full, self.dropped_ids))
        seconds = time.perf_counter() - start
        if self.trainer.model.training:  # evaluation runs after `on_step_end`: its time is no part of any step
            self.seconds_this_step += seconds
        self.log_metrics(requests, len(prompts), new_tokens, seconds)
        return texts

    def log_metrics(self, requests: list[RetraceRequest], completions: int, new_tokens: int, seconds: float) -> None:
        """The `retrace/*` metrics of one generation batch (through TRL's `_log_metric`)."""
        log = self.trainer._log_metric
        log("retrace/seconds", seconds)
        log("retrace/tokens_per_completion", new_tokens / max(1, completions))
        log("retrace/completion_length", new_tokens / max(1, len(requests) * self.samples))
        log("retrace/prefix_length", sum(len(r.prefix_ids) for r in requests) / max(1, len(requests)))
        if self.noise_levels:
            log("retrace/noise_level", sum(self.noise_levels) / len(self.noise_levels))


def check_conversational(trainer) -> None:
    """`new_turn` re-inference prompts are conversations: refuse a dataset of plain-text prompts when the trainer is
    built, not at the first step. (Datasets without random access are checked at their first batch.)"""
    eval_datasets = trainer.eval_dataset.values() if isinstance(trainer.eval_dataset, dict) else [trainer.eval_dataset]
    for dataset in (trainer.train_dataset, *eval_datasets):
        if not (hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__") and len(dataset)):
            continue
        row = dataset[0]
        if isinstance(row, dict) and "prompt" in row and not is_conversational({"prompt": row["prompt"]}):
            raise ValueError(NEW_TURN_NEEDS_CONVERSATIONS)


class RetraceTimeShare(TrainerCallback):
    """Logs `retrace/time_share`: training re-inference seconds / the optimizer step's time (TRL's `step_time`)."""

    def __init__(self, provider: RetraceProvider):
        self.provider = provider

    def on_step_end(self, args, state, control, **kwargs):
        metrics = self.provider.trainer._metrics["train"]
        if metrics.get("step_time"):
            metrics["retrace/time_share"].append(self.provider.seconds_this_step / metrics["step_time"][-1])
        self.provider.seconds_this_step = 0.0
