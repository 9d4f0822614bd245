"""Configuration: the trainer config (a `GRPOConfig` subclass) and the data arguments of a recipe.

A recipe is one flat YAML file read by TRL's `TrlParser`: keys of `SelfEvolveConfig` (any `GRPOConfig` or
`TrainingArguments` field too), of `DataArguments` and of TRL's `ModelConfig` side by side; command-line flags
override the YAML.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from trl import GRPOConfig

from .advantages import ADVANTAGE_MODES, LSE_OFFSETS, SCALE_MODES, advantage_setting_problems, resolved_scale
from .answers import EXTRACTORS, MATCH_MODES
from .badrows import BAD_ROW_POLICIES
from .data import DEFAULT_INSTRUCTION
from .csrs import ANCHOR_BASES, RETRACE_MODES
from .judge import JUDGE_BACKENDS
from .judge.prompt import JudgeTemplate
from .judge.reward import ON_FAILURE_POLICIES as JUDGE_FAILURE_POLICIES, failure_policy_problem
from .synthetic import TASKS as SYNTHETIC_TASKS
from .voting import TIE_RULES
from .vllm_generation import WEIGHT_SYNCS


class ConfigError(ValueError):
    """A recipe value that cannot work; the message names the field and the valid choices."""


def _choice_problems(name: str, value: Any, choices: tuple[str, ...]) -> list[str]:
    if value not in choices:
        return [f"Unknown {name} {value!r}; valid choices: {', '.join(choices)}."]
    return []


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    for problem in _choice_problems(name, value, choices):
        raise ConfigError(problem)


@dataclass
class SelfEvolveConfig(GRPOConfig):
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
            questions that do not occur in the training split. The summary's first lines (`self_evolve_trl.before_after`).

        > Parameters that control the advantages

        advantage (`str`, *optional*, defaults to `"lse"`):
            `grpo` (TRL's own, scaled by `scale_rewards`), `centered` (r - mean r) or `lse` (log-softmax of r/τ).
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

        > Parameters that control CSRS re-inference (SPEC §4; used by the `retrace_frequency` reward)

        retrace_anchors (`list[float]`, *optional*, defaults to `[0.7]`):
            Anchor points, as fractions in [0, 1]: each completion is cut after this share of its tokens and the
            policy re-infers the rest.
        retrace_anchor_base (`str`, *optional*, defaults to `"actual_length"`):
            What the fraction is of: `actual_length` (the completion's own length) or `max_length`
            (`max_completion_length`, released CSRS: completions shorter than the cut are kept whole).
        retrace_mode (`str`, *optional*, defaults to `"new_turn"`):
            `new_turn` (released CSRS: the prefix becomes a finished assistant turn and the model answers in a new
            one) or `continuation` (SCS: the model continues the prefix in the same turn).
        retrace_samples_per_anchor (`int`, *optional*, defaults to `3`):
            K, re-inferences sampled from each prefix, with the training sampler and backend. With
            `reproducible_generation`, each is sampled on its own seed (layout-independent, like the rollouts).
        retrace_visual_perturbation (`bool`, *optional*, defaults to `False`):
            VSP: Gaussian noise on the images of the re-inference prompts only (never on the trained rollouts).
        retrace_noise_max_level (`int`, *optional*, defaults to `40`):
            VSP noise level k is drawn uniformly from {1..max}; σ = k·255/100.
        retrace_generation_batch_size (`int`, *optional*):
            Re-inference rows (prefixes × K samples) per generation call, rounded down to whole K-blocks. Default:
            all of a process's re-inferences in one call, the fastest. Set it (e.g. to the rollout batch) when K times
            the rollout batch does not fit in memory with transformers generation.

        > Parameters that control the vLLM weight sync (`use_vllm: true`)

        vllm_weight_sync (`str`, *optional*, defaults to `"nccl"`):
            Server mode: `nccl` streams the weights over an NCCL group with the server (TRL's own, CUDA only); `disk`
            writes them as safetensors to `vllm_weight_sync_dir` after each optimizer step and has the server reload
            them (`reload_weights`), with no NCCL group. Colocate mode syncs in-process: TRL's own way on a GPU, the
            engine's `reload_weights` where vLLM runs on the CPU.
        vllm_weight_sync_dir (`str`, *optional*):
            Where `disk` writes the weights (default: `OUTPUT_DIR/vllm-weights`); the server must be able to read it.

        > Parameters that control the judge of the `judge_modulated` reward (Actor–Judge)

        judge_backend (`str`, *optional*, defaults to `"reference"`):
            `reference`: the frozen initial policy in the training process (with LoRA the base model with the adapter
            disabled; else TRL's reference model when `beta` > 0; else a frozen copy loaded for the judge).
            `openai`: an OpenAI-compatible chat-completions endpoint at `judge_base_url` (e.g. `vllm serve`).
        judge_base_url (`str`, *optional*):
            Base URL of the judge endpoint, e.g. `http://127.0.0.1:8001/v1` (`openai` backend).
        judge_model (`str`, *optional*):
            Model name sent to the endpoint; default: the first model the endpoint lists.
        judge_api_key_env (`str`, *optional*, defaults to `"JUDGE_API_KEY"`):
            Name of the environment variable holding the endpoint's API key (the key itself never goes in a recipe
            or a log).
        judge_prompt_template (`str`, *optional*):
            Path of the judge prompt template; default: the packaged rubric (`self_evolve_trl/judge/templates/
            default.txt`).
        judge_temperature (`float`, *optional*, defaults to `1.0`):
            Judge sampling temperature (0: greedy).
        judge_top_p (`float`, *optional*, defaults to `0.9`):
            Judge nucleus sampling.
        judge_max_tokens (`int`, *optional*, defaults to `1024`):
            Most tokens the judge may write per judgement.
        judge_repeats (`int`, *optional*, defaults to `1`):
            Judge samples per completion; their scores are averaged.
        judge_on_failure (`str`, *optional*, defaults to `"zero"`):
            A failed or unparseable judgement counts as score 0 (`zero`, released behaviour) or gets gate 1
            (`neutral`).
        judge_max_failure_rate (`float`, *optional*, defaults to `0.25`):
            Stop training (after saving a checkpoint) when more than this share of a step's judgements fail after
            retries, e.g. because the endpoint is down.
        judge_max_parse_failure_rate (`float`, *optional*, defaults to `0.9`):
            Also stop (after saving a checkpoint) when more than this share of the judge's answers in a step have no
            score that can be parsed: the wrong judge model or prompt template. `null`: never (they count per
            `judge_on_failure`), e.g. for a judge with random weights.
        judge_timeout (`float`, *optional*, defaults to `120.0`):
            Seconds per judge request before it counts as timed out (`openai` backend).
        judge_max_retries (`int`, *optional*, defaults to `3`):
            Retries of a failed request (connection errors, timeouts, 408/409/429/5xx), with exponential backoff.
        judge_concurrency (`int`, *optional*, defaults to `32`):
            Judge requests in flight at once per training process (`openai` backend).
        judge_batch_size (`int`, *optional*):
            Judgements per batched `generate` call (`reference` backend); default: `per_device_train_batch_size`.
            Unused with `reproducible_generation`: then each judgement is generated alone, on its own seed.
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
        metadata={"help": "Advantage estimator: `grpo`, `centered` or `lse`.", "choices": list(ADVANTAGE_MODES)},
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

    # ---- CSRS re-inference (issue 4; SPEC §4) ----------------------------------------------------------------
    retrace_anchors: list[float] = field(
        default_factory=lambda: [0.7],
        metadata={"help": "CSRS anchor points: fractions in [0, 1] of the completion kept as the re-inference prefix."},
    )
    retrace_anchor_base: str = field(
        default="actual_length",
        metadata={"help": "CSRS: anchors are fractions of `actual_length` or `max_length`.", "choices": list(ANCHOR_BASES)},
    )
    retrace_mode: str = field(
        default="new_turn",
        metadata={"help": "CSRS re-inference prompt: `new_turn` or `continuation`.", "choices": list(RETRACE_MODES)},
    )
    retrace_samples_per_anchor: int = field(
        default=3, metadata={"help": "CSRS: re-inferences sampled from each prefix (K)."}
    )
    retrace_visual_perturbation: bool = field(
        default=False, metadata={"help": "CSRS VSP: Gaussian noise on the re-inference images only."}
    )
    retrace_noise_max_level: int = field(
        default=40, metadata={"help": "CSRS VSP: noise level k uniform in {1..max}; sigma = k*255/100."}
    )
    retrace_generation_batch_size: int | None = field(
        default=None, metadata={"help": "CSRS: re-inference rows per generation call (default: all in one call)."}
    )
    # ---- end CSRS ----------------------------------------------------------------------------------------------

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

    # --- Actor–Judge: the judge of the `judge_modulated` reward (self_evolve_trl/judge) ----------------------------
    judge_backend: str = field(
        default="reference",
        metadata={"help": "Judge: `reference` (frozen initial policy, in process) or `openai` (an OpenAI-compatible "
                  "endpoint).", "choices": list(JUDGE_BACKENDS)},
    )
    judge_base_url: str | None = field(
        default=None, metadata={"help": "Judge endpoint base URL, e.g. http://127.0.0.1:8001/v1 (`openai` backend)."}
    )
    judge_model: str | None = field(
        default=None, metadata={"help": "Model name sent to the judge endpoint; default: the first one it lists."}
    )
    judge_api_key_env: str = field(
        default="JUDGE_API_KEY", metadata={"help": "Environment variable holding the judge endpoint's API key."}
    )
    judge_prompt_template: str | None = field(
        default=None, metadata={"help": "Judge prompt template file; default: the packaged rubric."}
    )
    judge_temperature: float = field(default=1.0, metadata={"help": "Judge sampling temperature (0: greedy)."})
    judge_top_p: float = field(default=0.9, metadata={"help": "Judge nucleus sampling top-p."})
    judge_max_tokens: int = field(default=1024, metadata={"help": "Most tokens the judge writes per judgement."})
    judge_repeats: int = field(default=1, metadata={"help": "Judge samples per completion (scores averaged)."})
    judge_on_failure: str = field(
        default="zero",
        metadata={"help": "A failed/unparseable judgement: score 0 (`zero`, released) or gate 1 (`neutral`).",
                  "choices": list(JUDGE_FAILURE_POLICIES)},
    )
    judge_max_failure_rate: float = field(
        default=0.25,
        metadata={"help": "Stop (after saving a checkpoint) when more than this share of a step's judgements fail."},
    )
    judge_max_parse_failure_rate: float | None = field(
        default=0.9,
        metadata={"help": "Also stop when more than this share of the judge's answers has no score (null: never)."},
    )
    judge_timeout: float = field(default=120.0, metadata={"help": "Seconds per judge request (`openai` backend)."})
    judge_max_retries: int = field(
        default=3, metadata={"help": "Retries of a failed judge request, with exponential backoff."}
    )
    judge_concurrency: int = field(
        default=32, metadata={"help": "Judge requests in flight at once per process (`openai` backend)."}
    )
    judge_batch_size: int | None = field(
        default=None,
        metadata={"help": "Judgements per batched generate call (`reference`); default: per_device_train_batch_size."},
    )
    # --- end Actor–Judge -------------------------------------------------------------------------------------------

    def __post_init__(self):
        problems = self.validation_problems()
        if problems:
            raise ConfigError(" | ".join(problems))
        self.scale_rewards = resolved_scale(self.advantage, self.scale_rewards)
        try:
            super().__post_init__()
        except ValueError as error:
            if "must be divisible by num_generations" not in str(error):
                raise
            raise ConfigError(self._group_geometry_message()) from None

    def validation_problems(self) -> list[str]:
        """Every problem that this package's own checks find in the fields, one message each; TRL's and
        transformers' checks (in `__post_init__`) are not run.

        It normalises the fields it checks, as training reads them: `reward_kwargs` from JSON, one reward name into a
        list, `retrace_anchors` into floats, and `judge_on_failure` into the `judge_modulated` reward's kwargs.
        """
        problems = []
        if isinstance(self.reward_kwargs, str):
            try:
                self.reward_kwargs = json.loads(self.reward_kwargs)
            except json.JSONDecodeError as error:
                problems.append(f"reward_kwargs is not valid JSON: {error}")
                self.reward_kwargs = {}
        self.reward_kwargs = dict(self.reward_kwargs or {})
        if isinstance(self.reward_funcs, str):
            self.reward_funcs = [self.reward_funcs]
        if not self.reward_funcs:
            problems.append("reward_funcs is empty: name at least one reward function.")
        for name, kwargs in self.reward_kwargs.items():
            if name not in self.reward_funcs:
                problems.append(
                    f"reward_kwargs has an entry for {name!r}, which is not in reward_funcs ({', '.join(self.reward_funcs)})."
                )
            elif not isinstance(kwargs, dict):
                problems.append(f"reward_kwargs[{name!r}] must be a mapping of keyword arguments, got {kwargs!r}.")
        if self.reward_weights is not None and len(self.reward_weights) != len(self.reward_funcs):
            problems.append(
                f"reward_weights has {len(self.reward_weights)} entries but reward_funcs has {len(self.reward_funcs)}."
            )
        problems += advantage_setting_problems(
            self.advantage, self.multi_objective_aggregation, self.scale_rewards, self.lse_tau, self.lse_offset,
            self.clip_advantage,
        )
        problems += _choice_problems("answer_extractor", self.answer_extractor, EXTRACTORS)
        problems += _choice_problems("answer_match", self.answer_match, MATCH_MODES)
        problems += _choice_problems("tie", self.tie, TIE_RULES)
        problems += _choice_problems("on_bad_row", self.on_bad_row, BAD_ROW_POLICIES)
        if not 0 <= self.max_bad_row_share <= 1:
            problems.append(f"max_bad_row_share must be between 0 and 1, got {self.max_bad_row_share}.")
        problems += check_retrace_config(self)  # CSRS (issue 4)
        problems += self._check_judge_fields()  # Actor–Judge
        if self.reproducible_generation and self.use_vllm:
            problems.append("reproducible_generation works with transformers generation only; set use_vllm: false.")
        problems += self._check_vllm_fields()
        return problems

    def _check_vllm_fields(self) -> list[str]:
        problems = _choice_problems("vllm_weight_sync", self.vllm_weight_sync, WEIGHT_SYNCS)
        if self.use_vllm and self.vllm_weight_sync == "disk" and self.vllm_mode != "server":
            problems.append(
                "vllm_weight_sync 'disk' is for vllm_mode 'server'; in colocate mode the weights are loaded in-process. "
                "Set vllm_weight_sync: nccl (the default), or vllm_mode: server."
            )
        return problems

    # --- Actor–Judge ------------------------------------------------------------------------------------------------
    def _check_judge_fields(self) -> list[str]:
        """The problems of the `judge_*` fields; hands `judge_on_failure` to the `judge_modulated` reward."""
        problems = _choice_problems("judge_backend", self.judge_backend, JUDGE_BACKENDS)
        problems += _choice_problems("judge_on_failure", self.judge_on_failure, JUDGE_FAILURE_POLICIES)
        if self.judge_backend == "openai" and not self.judge_base_url:
            problems.append("judge_backend 'openai' needs judge_base_url, e.g. http://127.0.0.1:8001/v1.")
        for name in ("judge_max_failure_rate", "judge_max_parse_failure_rate"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 1:
                problems.append(f"{name} must be between 0 and 1, got {value}.")
        for name, low in (("judge_max_tokens", 1), ("judge_repeats", 1), ("judge_max_retries", 0),
                          ("judge_concurrency", 1), ("judge_batch_size", 1)):
            value = getattr(self, name)
            if value is not None and value < low:
                problems.append(f"{name} must be >= {low}, got {value}.")
        if self.judge_timeout <= 0 or self.judge_temperature < 0 or not 0 < self.judge_top_p <= 1:
            problems.append("judge_timeout must be > 0, judge_temperature >= 0 and judge_top_p in (0, 1].")
        try:
            JudgeTemplate.load(self.judge_prompt_template)
        except ValueError as error:
            problems.append(str(error))
        for name in self.reward_funcs:
            if name.replace(":", ".").split(".")[-1] != "judge_modulated":
                continue
            kwargs = self.reward_kwargs.setdefault(name, {})
            if not isinstance(kwargs, dict):  # reported with the reward fields
                continue
            problem = failure_policy_problem(kwargs, self.judge_on_failure, f"reward_kwargs[{name!r}].on_failure")
            if problem:
                problems.append(problem)
            kwargs["on_failure"] = self.judge_on_failure
        return problems
    # --- end Actor–Judge --------------------------------------------------------------------------------------------



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


@dataclass
class DataArguments:
    r"""
    Data arguments of a recipe: which dataset, which columns, the actor instruction and the image size bounds.

    Parameters:
        dataset_name (`str`, *optional*, defaults to `"synthetic"`):
            A preset (`geo3k`, `geoqa`, `mmr1`, `synthetic`), a hub dataset id, or a local parquet/jsonl/json/csv file
            or folder of them.
        dataset_config (`str`, *optional*):
            Hub dataset configuration name.
        dataset_split (`str`, *optional*, defaults to `"train"`):
            Split to train on.
        question_column (`str`, *optional*):
            Column with the question text (default: the preset's, else `problem`).
        image_column (`str`, *optional*):
            Column with the image or list of images (default: the preset's, else `images` or `image`).
        answer_column (`str`, *optional*):
            Column with reference answers, moved to the hidden label column (default: the preset's; `none` for no
            labels).
        label_extractor (`str`, *optional*):
            How the reference answer is read from `answer_column`: `null` (the column is the answer, or what its
            `<answer>` tags hold when it has them), `answer_tag` (inside `<answer>` tags, as GeoQA's `solution`) or
            `boxed`.
        max_train_samples (`int`, *optional*):
            Keep only the first N examples.
        instruction (`str`, *optional*):
            Actor instruction appended to every question (SPEC §5).
        min_pixels (`int`, *optional*):
            Lower bound on image pixels (Qwen resizing); also set on the processor.
        max_pixels (`int`, *optional*):
            Upper bound on image pixels (Qwen resizing); also set on the processor.
        synthetic_task (`str`, *optional*, defaults to `"count"`):
            Task of the synthetic dataset: `count` (how many coloured cells) or `count_color` (how many red cells).
        synthetic_size (`int`, *optional*, defaults to `64`):
            Number of synthetic examples.
        synthetic_grid (`int`, *optional*, defaults to `2`):
            Cells per side of a synthetic image (each cell is one 28x28 Qwen patch group).
        synthetic_seed (`int`, *optional*, defaults to `0`):
            Seed of the synthetic dataset.

        > Held-out evaluation during training (with `eval_strategy: steps`, `eval_steps`, `num_generations_eval`)

        eval_dataset_name (`str`, *optional*):
            A labelled split to evaluate on during training: a preset, hub id or local file, as `dataset_name`
            (`synthetic`: drawn with `synthetic_seed + 1`). Logs `eval_labels/*` (sampled pass@1, maj@k, pass@k).
        eval_split (`str`, *optional*, defaults to `"test"`):
            Split of `eval_dataset_name`.
        eval_max_samples (`int`, *optional*):
            Evaluate on the first N examples only.
    """

    dataset_name: str = field(
        default="synthetic",
        metadata={"help": "Preset (geo3k, geoqa, mmr1, synthetic), hub id, or local parquet/jsonl/json/csv path."},
    )
    dataset_config: str | None = field(default=None, metadata={"help": "Hub dataset configuration name."})
    dataset_split: str = field(default="train", metadata={"help": "Split to train on."})
    question_column: str | None = field(default=None, metadata={"help": "Column with the question text."})
    image_column: str | None = field(default=None, metadata={"help": "Column with the image(s)."})
    answer_column: str | None = field(
        default=None, metadata={"help": "Column with reference answers (hidden label); `none` for no labels."}
    )
    label_extractor: str | None = field(
        default=None, metadata={"help": "How the reference answer is read: null, `answer_tag` or `boxed`."}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep only the first N examples."})
    instruction: str = field(
        default=DEFAULT_INSTRUCTION, metadata={"help": "Actor instruction appended to every question."}
    )
    min_pixels: int | None = field(default=None, metadata={"help": "Lower bound on image pixels."})
    max_pixels: int | None = field(default=None, metadata={"help": "Upper bound on image pixels."})
    synthetic_task: str = field(
        default="count", metadata={"help": "Synthetic task.", "choices": list(SYNTHETIC_TASKS)}
    )
    synthetic_size: int = field(default=64, metadata={"help": "Number of synthetic examples."})
    synthetic_grid: int = field(default=2, metadata={"help": "Cells per side of a synthetic image."})
    synthetic_seed: int = field(default=0, metadata={"help": "Seed of the synthetic dataset."})

    # --- held-out evaluation during training (self_evolve_trl.heldout) ---
    eval_dataset_name: str | None = field(
        default=None,
        metadata={"help": "Labelled split to evaluate on during training (preset, hub id or local file); needs eval_strategy."},
    )
    eval_split: str = field(default="test", metadata={"help": "Split of eval_dataset_name."})
    eval_max_samples: int | None = field(default=None, metadata={"help": "Evaluate on the first N examples only."})
    # --- end held-out evaluation ---

    def __post_init__(self):
        _check_choice("synthetic_task", self.synthetic_task, SYNTHETIC_TASKS)
        for name in ("synthetic_size", "synthetic_grid"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}.")


# ---- CSRS (issue 4) ----------------------------------------------------------------------------------------------

def check_retrace_config(config) -> list[str]:
    """The problems of the CSRS settings (SPEC §4): valid choices and ranges."""
    problems = _choice_problems("retrace_anchor_base", config.retrace_anchor_base, ANCHOR_BASES)
    problems += _choice_problems("retrace_mode", config.retrace_mode, RETRACE_MODES)
    if isinstance(config.retrace_anchors, (int, float)):
        config.retrace_anchors = [config.retrace_anchors]
    config.retrace_anchors = [float(a) for a in config.retrace_anchors or []]
    if not config.retrace_anchors or not all(0.0 <= a <= 1.0 for a in config.retrace_anchors):
        problems.append(f"retrace_anchors must be a non-empty list of fractions in [0, 1], got {config.retrace_anchors}.")
    if config.retrace_samples_per_anchor < 1:
        problems.append(f"retrace_samples_per_anchor must be >= 1, got {config.retrace_samples_per_anchor}.")
    if config.retrace_generation_batch_size is not None and config.retrace_generation_batch_size < 1:
        problems.append(f"retrace_generation_batch_size must be >= 1 or null, got {config.retrace_generation_batch_size}.")
    if not 1 <= config.retrace_noise_max_level <= 100:
        problems.append(f"retrace_noise_max_level must be in 1..100, got {config.retrace_noise_max_level}.")
    return problems
