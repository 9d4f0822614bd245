"""`SelfEvolveGRPOTrainer`: TRL's `GRPOTrainer` with group rewards over whole groups and pluggable advantages.

Nine methods of TRL's trainer are overridden, nothing else. Two carry the method:

- `_calculate_rewards`: TRL calls reward functions on each process with that process's completions only, and a
  group of `num_generations` completions can be split across processes (huggingface/trl#3896). Here the completions
  (and the dataset columns, and the extra inputs some rewards need) are gathered from all processes first; the main
  process computes every reward on whole groups (`group_rewards.py`) and broadcasts the result, so a 2-process run
  gives the same rewards as a 1-process run (`docs/architecture.md`, "Training step"). The label column is gathered
  separately for the diagnostics and never reaches a reward function. Reward models (TRL's: a sequence
  classification model, by hub id, local folder or instance) score each completion alone, so they are left to TRL's
  own `_calculate_rewards` (`super()`): each process scores its own completions, then the scores are gathered.
- `_generate_and_score_completions`: wrapped via `super()`; the advantages TRL computed are replaced by
  `group_advantages(rewards, mode=args.advantage)` (TRL's own `normalize_then_sum` ones are kept, clipped by
  `clip_advantage`; `docs/math.md`, "Advantages"), and the advantage statistics logged are the ones used. Before
  that, the rows that stand in for unreadable ones are counted and `on_bad_row` applied (`badrows.BadRows`).

Text-only rows (no image) may share a generation batch with image rows: `_generate` gives such a row the images
`[]` (TRL's transformers generation gives it `None`, which the processor rejects in a batch with images), and the
images logged with the completions are gathered on every process (TRL gathers them only on the processes whose
rows have images, and a process with text-only rows then hangs the run).

`log` adds the diagnostics by kind of question (image / text-only) to the metrics TRL averages, once the run has
seen both kinds (`diagnostics.DiagnosticsByKind`; `docs/math.md#diagnostics-kinds`), before TRL's own (`super()`).

`__init__` builds the reward functions from the config (`reward_funcs`, `reward_kwargs`; `reward_setup.py`) and the
providers of the extra inputs they need, and sets the reproducible rollout (`reproducible_generation`), before TRL's
own. It takes every argument of TRL's trainer except `tools` and `environment_factory` (tool-calling rollouts), which
it refuses.

Four checkpoint hooks:

- `_save_checkpoint` and `_load_optimizer_and_scheduler` save and restore the state of our own components
  (`checkpoints.py`) around TRL's own (`super()`), so a resumed run continues them;
- `_load_from_checkpoint` (resume) and `_load_best_model` (`load_best_model_at_end`) load a full checkpoint of a
  plain model with `checkpoints.load_model_weights`, since transformers' own load matches none of the keys that
  `save_pretrained` writes for Qwen2.5-VL; DeepSpeed, FSDP and PEFT models keep transformers' load (`super()`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from array import array
from typing import Any

import torch
from accelerate.utils import broadcast_object_list, gather_object
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints
from trl import GRPOTrainer

from ..advantages import clip_advantages, group_advantages
from ..answers import MATCH_STATS
from ..data.messages import has_image_parts
from ..errors import UsageError
from ..plugins import import_object
from ..voting import usable_label
from .badrows import BadRows
from .checkpoints import (
    accept_indexed_cpu_map_location,
    has_full_weights,
    load_component_states,
    load_model_weights,
    mark_checkpoint_complete,
    save_component_states,
    save_last_completed_step,
    unmark_checkpoint_complete,
)
from .. import certainty, csrs, judge, ttrl
from ..consistency_filter import FILTERED_SHARE, filter_batch, filters_groups, kept_groups
from .config import SelfEvolveConfig
from .rollout import reproducible_rollout
from .diagnostics import DiagnosticsByKind, row_kind, split_by_kind, vote_settings_note
from .group_rewards import (
    NOT_REWARD_COLUMNS,
    RewardLogs,
    group_metrics,
    match_failures,
    readable_columns,
    reward_table,
    row_inputs,
    strip_images,
)
from .guards import NonfiniteCounter, count_nonfinite, finite_or_zero
from .reward_setup import answer_settings, build_reward_functions
from ..rewards import RewardFunction
from .summary import SummaryCallback
from .vllm_generation import vllm_generation_class

# Extra per-completion reward inputs (a reward function names them in its `reward_inputs` attribute) and the
# classes that compute them: "input name" -> "module:Class", declared by each method next to its reward
# (docs/architecture.md, "Registries"). A provider is built once with the trainer, `Provider(trainer)`, and called on
# every process with that process's rows: `provider(inputs, prompts, completions, completion_ids_list) -> list`
# (one value per completion). A provider with state implements `state_dict()` / `load_state_dict(state)`; the trainer
# saves it with every checkpoint and restores it on resume (see `checkpoints.py`).
REWARD_INPUT_PROVIDERS: dict[str, str] = {
    **judge.PROVIDERS, **csrs.PROVIDERS, **certainty.PROVIDERS, **ttrl.PROVIDERS
}

logger = logging.getLogger(__name__)


TEXT_MODEL_WITH_IMAGES = ("A dataset row has images, and this model has no image processor (a text-only model, with a "
                          "tokenizer as its processing class): use a vision-language model, or text-only rows.")
# Arguments of TRL's `GRPOTrainer` that this trainer refuses: argument -> why.
UNSUPPORTED_ARGUMENTS = {
    "tools": "tool-calling rollouts are not supported: the rewards score the final answers of whole groups",
    "environment_factory": "environments are not supported: their per-process instances cannot score whole groups",
}


class SelfEvolveGRPOTrainer(GRPOTrainer):
    """GRPO for label-free self-evolution: consistency rewards on whole groups, and `grpo | centered | lse` advantages.

    Args:
        model: a model id/path or a loaded model, as for `GRPOTrainer`.
        reward_funcs: reward functions (registry names, `module:function` paths, callables or `RewardFunction`s)
            and reward models as `GRPOTrainer` takes them (a hub id or local folder of a sequence classification
            model, or an `nn.Module`, with `reward_processing_classes`); default: `args.reward_funcs` with
            `args.reward_kwargs`.
        args: a `SelfEvolveConfig`.
        Other arguments are passed to `GRPOTrainer`, except `tools` and `environment_factory`, which are refused.
    """

    _tag_names = ["trl", "grpo", "self-evolve"]
    _name = "SelfEvolveGRPO"

    def __init__(self, model, reward_funcs=None, args: SelfEvolveConfig | None = None, **kwargs):
        if args is None:
            name = model if isinstance(model, str) else model.config._name_or_path
            args = SelfEvolveConfig(f"{name.split('/')[-1]}-SelfEvolveGRPO")
        self._check_arguments(args, kwargs)
        reward_funcs = build_reward_functions(args, reward_funcs)  # as the CLI builds them
        note = vote_settings_note(reward_funcs, answer_settings(args))
        if note:
            logger.warning("Rewards: %s", note)
        if args.reproducible_generation:
            kwargs["rollout_func"] = reproducible_rollout
        functions = [f for f in reward_funcs if isinstance(f, RewardFunction)]
        needed = sorted({name for function in functions for name in function.required_inputs})
        unknown = [name for name in needed if name not in REWARD_INPUT_PROVIDERS]
        if unknown:
            raise ValueError(
                f"No provider for the reward input(s) {', '.join(unknown)}; known inputs: "
                f"{', '.join(sorted(REWARD_INPUT_PROVIDERS)) or 'none'}."
            )
        with self._vllm_generation_class(args):
            super().__init__(model=model, reward_funcs=reward_funcs, args=args, **kwargs)
        self._last_rewards_per_func: torch.Tensor | None = None
        self.nonfinite_counter = NonfiniteCounter()
        self.bad_rows = BadRows(args.on_bad_row, args.max_bad_row_share)  # unreadable dataset rows (`badrows.py`)
        self.diagnostics_by_kind = DiagnosticsByKind()  # image / text questions, once a run has both
        self.add_callback(SummaryCallback(self.nonfinite_counter, self.bad_rows))  # summary.txt / .json in output_dir
        self.reward_input_providers = {name: import_object(REWARD_INPUT_PROVIDERS[name])(self) for name in needed}

    @staticmethod
    def _vllm_generation_class(args: SelfEvolveConfig):
        """TRL builds `SelfEvolveVLLMGeneration` (the disk and CPU weight syncs) when it builds its vLLM backend."""
        if not args.use_vllm:
            return contextlib.nullcontext()
        sync_dir = args.vllm_weight_sync_dir or os.path.join(args.output_dir, "vllm-weights")
        return vllm_generation_class(args.vllm_weight_sync, sync_dir)

    @staticmethod
    def _check_arguments(args, kwargs: dict) -> None:
        if not isinstance(args, SelfEvolveConfig):
            raise TypeError(f"args must be a SelfEvolveConfig (TRL's GRPOConfig plus this trainer's fields), got "
                            f"{type(args).__name__}.")
        for name, why in UNSUPPORTED_ARGUMENTS.items():
            if kwargs.get(name):
                raise ValueError(f"SelfEvolveGRPOTrainer does not take {name}: {why}.")
        if args.reproducible_generation and kwargs.get("rollout_func") is not None:
            raise ValueError("reproducible_generation generates with the trainer's own rollout_func; pass a "
                             "rollout_func or set reproducible_generation, not both.")

    def _group_size(self) -> int:
        return self.num_generations if self.model.training else self.num_generations_eval

    def _reward_inputs(self, inputs, prompts, completions, completion_ids_list) -> dict[str, list]:
        """Extra per-completion inputs that some reward functions need (e.g. judge scores), computed on this
        process's completions by the providers of `REWARD_INPUT_PROVIDERS`, then gathered with them. Providers get
        the rows without the label column: labels never reach a reward, not even through a provider."""
        extras = {}
        if not self.reward_input_providers:
            return extras
        label_column = self.args.label_column
        rows = [{k: v for k, v in row.items() if k != label_column} for row in inputs]
        for name, provider in self.reward_input_providers.items():
            values = list(provider(rows, prompts, completions, completion_ids_list))
            if len(values) != len(completions):
                raise ValueError(f"Reward input {name!r} has {len(values)} values for {len(completions)} completions.")
            extras[name] = values
        return extras

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        mode = "train" if self.model.training else "eval"
        label_column = self.args.label_column
        columns = [k for k in inputs[0] if k not in NOT_REWARD_COLUMNS and k != label_column]
        extras = self._reward_inputs(inputs, prompts, completions, completion_ids_list)
        # Only what some reward function reads is gathered; token ids travel packed (unpickling lists of Python ints
        # from every process was the bulk of the gather).
        wanted = self._gathered_inputs()
        rows = [
            {
                "prompt": strip_images(prompts[i]) if "prompts" in wanted else None,
                "completion": completions[i],
                "completion_ids": array("i", completion_ids_list[i]) if "completion_ids" in wanted else None,
                "label": inputs[i].get(label_column),
                "kind": row_kind(inputs[i]),
                "columns": {k: inputs[i][k] for k in columns},
                "extras": {k: v[i] for k, v in extras.items()},
            }
            for i in range(len(prompts))
        ]
        all_rows = gather_object(rows)
        result = self._score_groups(all_rows, columns, list(extras)) if self.accelerator.is_main_process else None
        result = broadcast_object_list([result])[0]
        rewards_per_func = torch.tensor(result["rewards"], dtype=torch.float32, device=self.accelerator.device)
        models = [j for j, f in enumerate(self.reward_funcs) if isinstance(f, torch.nn.Module)]
        if models:
            model_rewards = self._reward_model_rewards(models, inputs, prompts, completions, completion_ids_list)
            nonfinite = ~torch.isfinite(model_rewards)
            rewards_per_func[:, models] = model_rewards.masked_fill(nonfinite, math.nan)
            result["metrics"]["rewards/nonfinite_count"] += float(nonfinite.sum())

        for name, values in result["metrics"].items():  # a list: one value per group (see `per_group_diagnostics`)
            self._metrics[mode][name].extend(values if isinstance(values, list) else [values])
        self.diagnostics_by_kind.add(mode, result["kinds"], result["by_kind"])
        for name, values in result["logged_metrics"].items():
            for value in values:
                self._log_metric(name, value)
        local = slice(self.accelerator.process_index * len(prompts), (self.accelerator.process_index + 1) * len(prompts))
        for column, values in result["logged_extra"].items():
            self._log_completion_extra(column, values[local])
        self._log_completion_extra("process", [self.accelerator.process_index] * len(prompts))
        for column, values in readable_columns(prompts, completions).items():
            self._log_completion_extra(column, values)

        self._last_rewards_per_func, self._last_ratios = rewards_per_func, result["majority_ratios"]
        if mode == "train":
            self.nonfinite_counter.add(rewards=result["metrics"]["rewards/nonfinite_count"])
        return rewards_per_func

    def _reward_model_rewards(self, models: list[int], inputs, prompts, completions, completion_ids_list):
        """The rewards of the reward models (`reward_funcs` at `models`), as TRL computes them: each process scores
        its own completions, then they are gathered (a reward model scores each completion alone)."""
        everything = self.reward_funcs, self.reward_processing_classes, self.reward_func_names
        self.reward_funcs, self.reward_processing_classes, self.reward_func_names = (
            [values[j] for j in models] for values in everything)
        try:
            return super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        finally:
            self.reward_funcs, self.reward_processing_classes, self.reward_func_names = everything

    def _gathered_inputs(self) -> set[str]:
        """The optional per-completion inputs (`prompts`, `completion_ids`) that some reward function reads."""
        functions = [f for f in self.reward_funcs if isinstance(f, RewardFunction)]  # not the reward models
        return {name for name in ("prompts", "completion_ids") if any(f.accepts(name) for f in functions)}

    def _score_groups(self, rows: list[dict], columns: list[str], extra_names: list[str]) -> dict[str, Any]:
        """Every reward function and the diagnostics on the whole generation batch (main process only)."""
        match_stats_before = MATCH_STATS.snapshot()
        logs = RewardLogs(len(rows))
        settings = answer_settings(self.args)
        reward_inputs = {
            **row_inputs(rows, columns, extra_names),
            "group_size": self._group_size(),
            **settings,
            "trainer_state": self.state,
            "log_metric": logs.log_metric,
            "log_extra": logs.log_extra,
        }
        # the reward models' columns are filled per process (`_reward_model_rewards`)
        rewards, nonfinite = reward_table(self.reward_funcs, reward_inputs, len(rows))
        labels = [row["label"] for row in rows]
        metrics, answers = group_metrics(self.reward_funcs, settings, reward_inputs["completions"], labels,
                                         self._group_size(), self.model.training, reward_inputs.get("vote_completions"))
        first_rows = rows[:: self._group_size()]  # one per group: its question's kind and label
        kinds = [row["kind"] for row in first_rows]
        by_kind = split_by_kind(metrics, kinds, [usable_label(row["label"]) is not None for row in first_rows])
        metrics["rewards/nonfinite_count"] = float(nonfinite)
        metrics.update(match_failures(match_stats_before))
        logs.extra.setdefault("answer", ["" if a is None else a for a in answers])
        return {"rewards": rewards.tolist(), "metrics": metrics, "kinds": kinds, "by_kind": by_kind,
                "logged_metrics": dict(logs.metrics),
                "logged_extra": logs.extra, "majority_ratios": list(metrics["self_consistency/majority_ratio"])}

    def _generate(self, prompts: list):
        if not self._is_vlm and any(map(has_image_parts, prompts)):  # a tokenizer would render the images as text
            raise UsageError(TEXT_MODEL_WITH_IMAGES)
        output = super()._generate(prompts)
        images = output[6]  # (prompt_ids, completion_ids, tool_mask, completions, logprobs, extra_fields, images, ...)
        if images is not None and any(row_images is None for row_images in images):
            output = (*output[:6], [row_images or [] for row_images in images], *output[7:])
        return output

    def _generate_and_score_completions(self, inputs):
        self.bad_rows.observe(self, inputs)  # rows that stand in for unreadable ones: counted, and the policy applied
        # TRL gathers the images it logs only on the processes whose rows have images: a process with text-only rows
        # never joins that collective and the run hangs. They are gathered here, on every process.
        log_images, self.log_multimodal = self.log_multimodal, False
        try:
            output = super()._generate_and_score_completions(inputs)
        finally:
            self.log_multimodal = log_images
        if log_images:
            images = gather_object([row.get("images") or [] for row in inputs])
            if any(images):
                self._logs["images"].extend(images)
        mode = "train" if self.model.training else "eval"
        group_size = self._group_size()
        rewards_per_func = self._last_rewards_per_func
        if self.args.advantage == "grpo" and self.multi_objective_aggregation == "normalize_then_sum":
            # TRL's own per-reward normalisation is kept: its advantages, from every process, clipped as any other
            all_advantages = self.accelerator.gather(output["advantages"]).cpu()
            all_advantages = clip_advantages(all_advantages, self.args.clip_advantage)
        else:
            weights = self.reward_weights.to(rewards_per_func.device)
            rewards = (rewards_per_func * weights.unsqueeze(0)).nansum(dim=1)
            rewards[torch.isnan(rewards_per_func).all(dim=1)] = torch.nan
            all_advantages = group_advantages(
                rewards,
                group_size,
                mode=self.args.advantage,
                tau=self.args.lse_tau,
                offset=self.args.lse_offset,
                scale=self.scale_rewards,
                clip=self.args.clip_advantage,
            )
        nonfinite = count_nonfinite(all_advantages)  # e.g. an overflow of huge (finite) rewards
        all_advantages = finite_or_zero(all_advantages)
        self._metrics[mode]["advantages/nonfinite_count"].append(float(nonfinite))
        if mode == "train":
            self.nonfinite_counter.add(advantages=nonfinite)
        n_local = output["prompt_ids"].size(0)
        start = self.accelerator.process_index * n_local
        if mode == "train" and filters_groups(self.args):  # docs/math.md#consistency-filter; on every process
            kept = kept_groups(self._last_ratios, self.args.min_consistency, self.args.max_consistency)
            all_advantages = filter_batch(output, all_advantages, kept, group_size, start, self.accelerator.gather)
            self._metrics[mode][FILTERED_SHARE].append(1.0 - sum(kept) / len(kept))
        output["advantages"] = all_advantages[start : start + n_local].to(output["advantages"].device)

        logged = list(self._logs["advantages"])
        self._logs["advantages"].clear()
        self._logs["advantages"].extend(logged[: len(logged) - all_advantages.numel()] + all_advantages.tolist())
        self._metrics[mode]["advantages/mean"].append(all_advantages.mean().item())
        self._metrics[mode]["advantages/std"].append(all_advantages.std().item() if all_advantages.numel() > 1 else 0.0)
        self._metrics[mode]["advantages/abs_max"].append(all_advantages.abs().max().item())
        self._metrics[mode]["advantages/frac_zero"].append((all_advantages == 0).float().mean().item())
        return output

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        mode = "train" if self.model.training else "eval"
        self.diagnostics_by_kind.flush(mode, self._metrics[mode])  # the diagnostics by kind, if the run has both
        super().log(logs, start_time)

    def _save_checkpoint(self, model, trial):
        # The checkpoint is complete once `self_evolve_complete.json` exists (checkpoints.py): the main process writes
        # it last, after every process has written all its files (ours, the Trainer's and TRL's).
        run_dir = self._get_output_dir(trial=trial)
        checkpoint_dir = os.path.join(run_dir, f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
        if self.args.should_save:
            unmark_checkpoint_complete(checkpoint_dir)  # the same step saved again (e.g. when the judge stops a run)
        self.accelerator.wait_for_everyone()
        save_component_states(self, checkpoint_dir)
        limit, self.args.save_total_limit = self.args.save_total_limit, None  # older ones go once this is complete
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self.args.save_total_limit = limit
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            mark_checkpoint_complete(checkpoint_dir, self.state.global_step, self.accelerator.num_processes)
            rotate_checkpoints(output_dir=run_dir, save_total_limit=limit,
                               best_model_checkpoint=self.state.best_model_checkpoint, use_mtime=True)

    def save_last_completed_step(self) -> str | None:
        """Checkpoint the last completed step before a run is stopped mid-step (the judge and bad rows stop runs);
        the folder, or None when no step has completed. Call on every process together."""
        return save_last_completed_step(self)

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        model = self.model if model is None else model
        plain = not (self.is_fsdp_enabled or self.is_deepspeed_enabled or hasattr(model, "peft_config"))
        if plain and has_full_weights(resume_from_checkpoint):
            load_model_weights(model, resume_from_checkpoint)  # transformers' own load misses renamed VLM keys
        else:
            super()._load_from_checkpoint(resume_from_checkpoint, model)

    def _load_best_model(self):
        best = self.state.best_model_checkpoint
        plain = not (self.is_fsdp_enabled or self.is_deepspeed_enabled or hasattr(self.model, "peft_config"))
        if plain and has_full_weights(best):
            load_model_weights(self.model, best)  # `load_best_model_at_end`: the same renamed-key miss as on resume
        else:
            super()._load_best_model()

    def _load_optimizer_and_scheduler(self, checkpoint):
        accept_indexed_cpu_map_location()  # multi-process CPU runs map the optimizer state to "cpu:0"
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is not None:
            load_component_states(self, checkpoint)
