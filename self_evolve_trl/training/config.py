"""Configuration: the trainer config, a `GRPOConfig` subclass (the data arguments of a recipe: `data/arguments.py`).

A recipe is one flat YAML file read by TRL's `TrlParser`: keys of `SelfEvolveConfig` (any `GRPOConfig` or
`TrainingArguments` field too), of `DataArguments` and of TRL's `ModelConfig` side by side; command-line flags
override the YAML.

Each group of settings has one rule returning its `Problem`s: rewards, advantages (`advantages.advantage_problems`, which
`group_advantages` applies too), answers, bad rows, CSRS (`csrs_setting_problems`), the token confidence input
(`certainty_setting_problems`), the judge (`judge_setting_problems`), the consistency filter
(`consistency_filter_setting_problems`), TTRL (`ttrl_setting_problems`) and vLLM.
`SelfEvolveConfig.validation_problems` runs them all; `__post_init__` raises `ConfigError` with every line, and
`cli check` reports the same list.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from trl import GRPOConfig

from ..advantages import LSE_OFFSETS, SCALE_MODES, advantage_problems, resolved_scale
from ..answers import EXTRACTORS, MATCH_MODES
from .badrows import BAD_ROW_POLICIES
from ..certainty.settings import CertaintySettings, certainty_setting_problems
from ..consistency_filter.settings import ConsistencyFilterSettings, consistency_filter_setting_problems
from ..csrs.settings import CSRSSettings, csrs_setting_problems
from ..errors import ConfigError, Problem, choice_problems
from ..judge.settings import JudgeSettings, judge_setting_problems
from ..rewards import available_rewards
from ..ttrl.settings import TTRLSettings, ttrl_setting_problems
from .vllm_generation import WEIGHT_SYNCS
from ..voting import TIE_RULES


@dataclass
class SelfEvolveConfig(
    JudgeSettings, CSRSSettings, CertaintySettings, ConsistencyFilterSettings, TTRLSettings, GRPOConfig
):
    r"""
    Configuration class for [`SelfEvolveGRPOTrainer`]: TRL's `GRPOConfig` plus the label-free reward and advantage
    settings. Every `GRPOConfig` field keeps its meaning and default.

    Parameters:
        > Parameters that control the rewards

        reward_funcs (`list[str]`, *optional*, defaults to `["soft_frequency", "format"]`):
            Reward functions, each a registry name (`majority_vote`, `soft_frequency`, `format`, ...) or a
            `module:function` path. Their weights are `reward_weights` (TRL's field).
        reward_kwargs (`dict[str, dict]` or `str`, *optional*):
            Keyword arguments per reward function, keyed by its entry in `reward_funcs`, e.g.
            `{"soft_frequency": {"hard_threshold": 0.85}, "format": {"penalty": 0.5}}` (a JSON string on the command
            line).
        answer_extractor (`str`, *optional*, defaults to `"boxed"`):
            How final answers are read from completions: `boxed` (last `\boxed{}`), `answer_tag` or `last_number`.
        answer_match (`str`, *optional*, defaults to `"math"`):
            Answer equivalence: `exact`, `normalized` or `math` (normalisation + math-verify).
        abstain_as_answer (`bool`, *optional*, defaults to `False`):
            Treat a missing answer as the literal class "None", as the released codebases do.
        tie (`str`, *optional*, defaults to `"first"`):
            Majority tie rule: `first` (the class seen first wins) or `none` (a tie has no majority).
        label_column (`str`, *optional*, defaults to `"label"`):
            Dataset column with reference answers. It never reaches a reward function; it is used only for the
            diagnostics (pseudo-label accuracy, rollout accuracy, ...).
        print_summary (`bool`, *optional*, defaults to `True`):
            Print the one-screen run summary at the end of training. It is written to `output_dir/summary.txt` and
            `summary.json` either way.
        accuracy_before_after (`bool`, *optional*, defaults to `False`):
            Score the labelled eval split (`eval_dataset_name`; `eval_strategy` may stay `no`) before the first step
            and after the last: greedy pass@1 and maj@k (k = `num_generations_eval`, else `num_generations`), on the
            questions that do not occur in the training split. The summary's first lines (`self_evolve_trl.training.before_after`).

        > Parameters that control the advantages

        advantage (`str`, *optional*, defaults to `"lse"`):
            `grpo` (TRL's own, scaled by `scale_rewards`), `centered` (r - mean r) or `lse` (log-softmax of r/τ); or
            your own mode: a name added with `advantages.register_advantage`, or a `module:function` path.
        scale_rewards (`str`, *optional*):
            TRL's field, for `advantage: grpo` only: `group` (the default there), `batch` or `none`. The other
            advantages are not scaled (it resolves to `none`; `group` or `batch` is refused).
        lse_tau (`float`, *optional*, defaults to `1.0`):
            Temperature τ of the `lse` advantage (another value is refused with the other advantages).
        lse_offset (`str`, *optional*, defaults to `"log_group_size"`):
            `log_group_size` (add log G: equal rewards give 0) or `none` (the paper's literal form, all A ≤ 0); `lse`
            only, as `lse_tau`.
        clip_advantage (`float`, *optional*):
            Clamp advantages to [-clip_advantage, clip_advantage] (every advantage, every aggregation).

        TRL's `multi_objective_aggregation: normalize_then_sum` works with `advantage: grpo` only (and its
        `scale_rewards: group`). A combination that would leave a setting unused is refused (README: "Which
        reward/advantage settings combine").

        > Parameters that control generation

        reproducible_generation (`bool`, *optional*, defaults to `False`):
            Sample each completion on its own with a seed made of `seed`, the step and the completion's global
            index, so that rollouts (and the `reference` judge's judgements) do not depend on the number of processes.
            Slow (batch size 1); for debugging and for comparing process layouts. Transformers generation only.

        > Parameters that control unreadable dataset rows

        on_bad_row (`str`, *optional*, defaults to `"skip"`):
            A row whose image cannot be read or decoded: `skip` uses the next readable row in its place (a warning
            per row, counted in `data/skipped_rows` and the run summary); `stop` saves a checkpoint of the last
            completed step and stops with the row, the reason and the resume command.
        max_bad_row_share (`float`, *optional*, defaults to `0.05`):
            With `skip`, stop the same way once more than this share of the training rows was skipped.

        > Parameters that control the vLLM weight sync (`use_vllm: true`)

        vllm_weight_sync (`str`, *optional*, defaults to `"nccl"`):
            Server mode: `nccl` streams the weights over an NCCL group with the server (TRL's own, CUDA only); `disk`
            writes them as safetensors to `vllm_weight_sync_dir` after each optimizer step and has the server reload
            them (`reload_weights`), with no NCCL group. Colocate mode syncs in-process: TRL's own way on a GPU, the
            engine's `reload_weights` where vLLM runs on the CPU.
        vllm_weight_sync_dir (`str`, *optional*):
            Where `disk` writes the weights (default: `OUTPUT_DIR/vllm-weights`); the server must be able to read it.

        The CSRS re-inference settings (`retrace_*`) are [`CSRSSettings`]'s, the judge's (`judge_*`) are
        [`JudgeSettings`]'s, the token confidence input's (`certainty_*`) are [`CertaintySettings`]'s, the
        consistency filter's (`min_consistency`, `max_consistency`) are [`ConsistencyFilterSettings`]'s, TTRL's
        `vote_samples` is [`TTRLSettings`]'s.
    """

    _VALID_DICT_FIELDS = GRPOConfig._VALID_DICT_FIELDS + ["reward_kwargs"]

    reward_funcs: list[str] = field(
        default_factory=lambda: ["soft_frequency", "format"],
        metadata={"help": "Reward functions: registry names or `module:function` paths."},
    )
    reward_kwargs: dict[str, Any] | str | None = field(
        default=None,
        metadata={"help": "Keyword arguments per reward function, keyed by its `reward_funcs` entry (JSON on the CLI)."},
    )
    answer_extractor: str = field(
        default="boxed",
        metadata={"help": "How final answers are read from completions.", "choices": list(EXTRACTORS)},
    )
    answer_match: str = field(
        default="math",
        metadata={"help": "Answer equivalence used for voting and diagnostics.", "choices": list(MATCH_MODES)},
    )
    abstain_as_answer: bool = field(
        default=False,
        metadata={"help": "Treat a missing answer as the literal class 'None' (released behaviour)."},
    )
    tie: str = field(
        default="first",
        metadata={"help": "Majority tie rule: `first` or `none`.", "choices": list(TIE_RULES)},
    )
    label_column: str = field(
        default="label",
        metadata={"help": "Dataset column with reference answers; hidden from rewards, used for diagnostics only."},
    )
    print_summary: bool = field(
        default=True,
        metadata={"help": "Print the run summary at the end of training (always written to output_dir/summary.txt)."},
    )
    accuracy_before_after: bool = field(
        default=False,
        metadata={"help": "Score the eval split (eval_dataset_name) before and after training: greedy pass@1 and maj@k "
                          "on its questions not in the training split; the summary's first lines."},
    )
    advantage: str = field(
        default="lse",
        metadata={"help": "Advantage estimator: `grpo`, `centered`, `lse`, a mode added with `register_advantage`, or "
                          "a `module:function` path."},
    )
    scale_rewards: str | None = field(
        default=None,
        metadata={"help": "TRL's reward scaling, for `advantage: grpo` only: `group` (default there), `batch` or "
                  "`none`; the other advantages are not scaled (`none`).", "choices": list(SCALE_MODES)},
    )
    lse_tau: float = field(default=1.0, metadata={"help": "Temperature τ of the `lse` advantage (`lse` only)."})
    lse_offset: str = field(
        default="log_group_size",
        metadata={"help": "Offset of the `lse` advantage: `log_group_size` or `none` (`lse` only).",
                  "choices": list(LSE_OFFSETS)},
    )
    clip_advantage: float | None = field(
        default=None, metadata={"help": "Clamp advantages to [-clip_advantage, clip_advantage] (every advantage)."}
    )
    reproducible_generation: bool = field(
        default=False,
        metadata={"help": "Sample each completion with its own seed (layout-independent rollouts; slow)."},
    )
    on_bad_row: str = field(
        default="skip",
        metadata={"help": "A row with an unreadable image: use the next readable row (`skip`) or save and stop (`stop`).",
                  "choices": list(BAD_ROW_POLICIES)},
    )
    max_bad_row_share: float = field(
        default=0.05, metadata={"help": "With on_bad_row skip: stop (after saving) when more of the rows were skipped."}
    )

    vllm_weight_sync: str = field(
        default="nccl",
        metadata={"help": "How trained weights reach a vLLM server (`vllm_mode: server`): `nccl` (TRL's own: an NCCL "
                  "group with the server, CUDA only) or `disk` (safetensors in `vllm_weight_sync_dir`, reloaded by the "
                  "server; for clusters without NCCL between trainer and server, and for a server on the CPU).",
                  "choices": list(WEIGHT_SYNCS)},
    )
    vllm_weight_sync_dir: str | None = field(
        default=None,
        metadata={"help": "Folder that `vllm_weight_sync: disk` writes the weights to; the server must read it "
                  "(default: `OUTPUT_DIR/vllm-weights`)."},
    )

    def __post_init__(self):
        problems = self.validation_problems()
        if problems:
            raise ConfigError(" | ".join(problem.line for problem in problems))
        self.scale_rewards = resolved_scale(self.advantage, self.scale_rewards)
        try:
            super().__post_init__()
        except ValueError as error:
            if "must be divisible by num_generations" not in str(error):
                raise
            raise ConfigError(self._group_geometry_message()) from None

    def validation_problems(self, reward_function_problems=None) -> list[Problem]:
        """Every problem that this package's own rules find in the fields, one `Problem` each, group by group; TRL's
        and transformers' checks (in `__post_init__`) are not run. `cli check` reports exactly these.

        `reward_function_problems(config)`, if given, adds the problems of the reward functions themselves (`check`:
        whether they resolve and take their keyword arguments), after those of `reward_kwargs`.

        It normalises the fields it checks, as training reads them: `reward_kwargs` from JSON, one reward name into a
        list, `retrace_anchors` into floats, and `judge_on_failure` into the `judge_modulated` reward's kwargs.
        """
        return (
            reward_setting_problems(self, reward_function_problems)
            + advantage_config_problems(self)
            + answer_setting_problems(self)
            + bad_row_setting_problems(self)
            + csrs_setting_problems(self)
            + certainty_setting_problems(self)
            + judge_setting_problems(self)
            + consistency_filter_setting_problems(self)
            + ttrl_setting_problems(self)
            + vllm_setting_problems(self)
        )

    def _group_geometry_message(self) -> str:
        processes = self.world_size
        steps = self.steps_per_generation or self.gradient_accumulation_steps
        size = self.generation_batch_size or self.per_device_train_batch_size * processes * steps
        return (
            f"The generation batch cannot hold whole groups: per_device_train_batch_size x processes x "
            f"steps_per_generation = {self.per_device_train_batch_size} x {processes} x {steps} = {size} completions "
            f"is not a multiple of num_generations ({self.num_generations}). Change one of them, e.g. "
            f"steps_per_generation: {self.num_generations} or per_device_train_batch_size: {self.num_generations}."
        )


def reward_setting_problems(config, function_problems=None) -> list[Problem]:
    """The problems of `reward_funcs`, `reward_kwargs` and `reward_weights`; normalises the first two as training reads
    them (one name into a list, `reward_kwargs` from JSON). `function_problems(config)`, if given, adds the problems of
    the functions themselves, after those of `reward_kwargs`."""
    problems = []
    if isinstance(config.reward_kwargs, str):
        try:
            config.reward_kwargs = json.loads(config.reward_kwargs)
        except json.JSONDecodeError as error:
            problems.append(Problem("reward_kwargs", f"is not valid JSON: {error}", "write it as a YAML mapping."))
            config.reward_kwargs = {}
    config.reward_kwargs = dict(config.reward_kwargs or {})
    funcs = config.reward_funcs = [config.reward_funcs] if isinstance(config.reward_funcs, str) else list(
        config.reward_funcs or [])
    if not funcs:
        problems.append(Problem("reward_funcs", "is empty: name at least one reward function.",
                                f"name at least one of: {', '.join(available_rewards())}."))
    for name, kwargs in config.reward_kwargs.items():
        if name not in funcs:
            problems.append(Problem(
                "reward_kwargs", f"has an entry for {name!r}, which is not in reward_funcs ({', '.join(funcs)}).",
                f"key it by one of: {', '.join(funcs) or 'the reward_funcs entries'}, or remove it."))
        elif not isinstance(kwargs, dict):
            problems.append(Problem(f"reward_kwargs[{name!r}]", f"must be a mapping of keyword arguments, got "
                                    f"{kwargs!r}.", "write `{arg: value}`."))
    if function_problems is not None:
        problems += function_problems(config)
    weights = config.reward_weights
    if weights is not None:
        if len(weights) != len(funcs):
            problems.append(Problem("reward_weights", f"has {len(weights)} entries for {len(funcs)} reward functions.",
                                    f"give one weight per reward function ({', '.join(funcs)})."))
        bad = [w for w in weights if not isinstance(w, (int, float)) or not math.isfinite(w)]
        if bad:
            problems.append(Problem("reward_weights", f"has non-finite weights {bad}.", "use finite numbers."))
    return problems


def advantage_config_problems(config) -> list[Problem]:
    """The problems of the advantage settings: the one rule that `group_advantages` also applies."""
    return advantage_problems(config.advantage, config.multi_objective_aggregation, config.scale_rewards,
                              config.lse_tau, config.lse_offset, config.clip_advantage)


def answer_setting_problems(config) -> list[Problem]:
    """The problems of how answers are read, compared and voted on."""
    return (choice_problems("answer_extractor", config.answer_extractor, EXTRACTORS)
            + choice_problems("answer_match", config.answer_match, MATCH_MODES)
            + choice_problems("tie", config.tie, TIE_RULES))


def bad_row_setting_problems(config) -> list[Problem]:
    """The problems of `on_bad_row` and `max_bad_row_share`."""
    problems = choice_problems("on_bad_row", config.on_bad_row, BAD_ROW_POLICIES)
    if not 0 <= config.max_bad_row_share <= 1:
        problems.append(Problem("max_bad_row_share", f"must be between 0 and 1, got {config.max_bad_row_share}."))
    return problems


def vllm_setting_problems(config) -> list[Problem]:
    """The problems of generating with vLLM: `reproducible_generation` needs transformers generation, and the weight
    sync must fit `vllm_mode`."""
    problems = []
    if config.reproducible_generation and config.use_vllm:
        problems.append(Problem("reproducible_generation", "works with transformers generation only; set use_vllm: "
                                "false.", "set use_vllm: false, or reproducible_generation: false."))
    problems += choice_problems("vllm_weight_sync", config.vllm_weight_sync, WEIGHT_SYNCS)
    if config.use_vllm and config.vllm_weight_sync == "disk" and config.vllm_mode != "server":
        problems.append(Problem(
            "vllm_weight_sync", "'disk' is for vllm_mode 'server'; in colocate mode the weights are loaded in-process. "
            "Set vllm_weight_sync: nccl (the default), or vllm_mode: server."))
    return problems
