"""Settings of the judge that the `judge_modulated` reward consults: the `JudgeSettings` fields of
`SelfEvolveConfig` and their problems (`judge_setting_problems`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import Problem, choice_problems
from .reward import ON_FAILURE_POLICIES, failure_policy_problem
from .backends import JUDGE_BACKENDS, backend_class
from .prompt import JudgeTemplate


@dataclass
class JudgeSettings:
    r"""
    The judge of the `judge_modulated` reward (Actor–Judge); a part of [`SelfEvolveConfig`].

    Parameters:

        judge_backend (`str`, *optional*, defaults to `"reference"`):
            `reference`: the frozen initial policy in the training process (with LoRA the base model with the adapter
            disabled; else TRL's reference model when `beta` > 0; else a frozen copy loaded for the judge).
            `openai`: an OpenAI-compatible chat-completions endpoint at `judge_base_url` (e.g. `vllm serve`).
            Your own backend: a name added to `judge.backends.JUDGE_BACKENDS`, or its `module:Class` path.
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

    judge_backend: str = field(
        default="reference",
        metadata={"help": "Judge: `reference` (frozen initial policy, in process), `openai` (an OpenAI-compatible "
                  "endpoint), or your own backend's `module:Class`."},
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
                  "choices": list(ON_FAILURE_POLICIES)},
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


def judge_setting_problems(config) -> list[Problem]:
    """The problems of the `judge_*` fields; hands `judge_on_failure` to the `judge_modulated` reward's keyword
    arguments (`config.reward_kwargs`, a dict by then)."""
    problems = backend_problems(config.judge_backend)
    problems += choice_problems("judge_on_failure", config.judge_on_failure, ON_FAILURE_POLICIES)
    if config.judge_backend == "openai" and not config.judge_base_url:
        problems.append(Problem("judge_backend", "'openai' needs judge_base_url, e.g. http://127.0.0.1:8001/v1.",
                                "set judge_base_url, or judge_backend: reference."))
    for name in ("judge_max_failure_rate", "judge_max_parse_failure_rate"):
        value = getattr(config, name)
        if value is not None and not 0 <= value <= 1:
            problems.append(Problem(name, f"must be between 0 and 1, got {value}."))
    for name, low in (("judge_max_tokens", 1), ("judge_repeats", 1), ("judge_max_retries", 0),
                      ("judge_concurrency", 1), ("judge_batch_size", 1)):
        value = getattr(config, name)
        if value is not None and value < low:
            problems.append(Problem(name, f"must be >= {low}, got {value}."))
    if config.judge_timeout <= 0 or config.judge_temperature < 0 or not 0 < config.judge_top_p <= 1:
        problems.append(Problem("judge_timeout", "must be > 0, judge_temperature >= 0 and judge_top_p in (0, 1]."))
    try:
        JudgeTemplate.load(config.judge_prompt_template)
    except ValueError as error:
        problems.append(Problem("config", str(error), "give judge_prompt_template a readable template file, or leave "
                                "it out (the packaged rubric)."))
    return problems + _failure_policy_problems(config)


def backend_problems(name: str) -> list[Problem]:
    """A problem if `judge_backend` names no registered backend and no importable `module:Class`."""
    if name in JUDGE_BACKENDS or ":" not in str(name):
        return choice_problems("judge_backend", name, JUDGE_BACKENDS)
    try:
        backend_class(name)
    except (ImportError, AttributeError) as error:
        return [Problem("judge_backend", f"{name!r} cannot be imported ({error}).",
                        "give an importable `module:Class` that follows `JudgeBackend`.")]
    return []


def _failure_policy_problems(config) -> list[Problem]:
    """`judge_on_failure` handed to every `judge_modulated` reward, which must not set another `on_failure`."""
    problems = []
    for name in config.reward_funcs:
        if name.replace(":", ".").split(".")[-1] != "judge_modulated":
            continue
        kwargs = config.reward_kwargs.setdefault(name, {})
        if not isinstance(kwargs, dict):  # reported with the reward settings
            continue
        problem = failure_policy_problem(kwargs, config.judge_on_failure, f"reward_kwargs[{name!r}].on_failure")
        if problem:
            problems.append(Problem("judge_on_failure", problem, f"remove reward_kwargs[{name!r}].on_failure."))
        kwargs["on_failure"] = config.judge_on_failure
    return problems
