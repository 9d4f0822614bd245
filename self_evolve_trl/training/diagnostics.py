"""Per-step diagnostics of label-free training (`docs/math.md`, "Diagnostics").

Label-free training fails quietly: the policy collapses onto its own early majority while the reward keeps rising.
These numbers show it while it happens. All are computed from the group votes (`voting.vote_groups`, the same
counting the consistency rewards use), taken with the answer settings the rewards voted with (`vote_settings`: a
reward's own bound `extractor`, `match`, `abstain_as_answer` and `tie`, else the config's); the label metrics only
where the data has reference answers (which never reach a reward).

Label-free (always), one value per group, averaged over the groups of a logging step:
    self_consistency/majority_ratio         p_max, the share of the group in its largest answer class
    self_consistency/high_confidence_share  1 if p_max >= 0.8 else 0: the share of such groups (the collapse indicator)
    self_consistency/answer_entropy         entropy (nats) of the group's answer classes (abstentions left out;
                                            0 when every completion gives the same answer, or none)
    self_consistency/distinct_answers       number of answer classes in the group
    self_consistency/abstention_rate        share of completions without a final answer
    self_consistency/format_violation_rate  share of completions that break the output format (the `format` reward's
                                            pattern when the recipe uses it)
With labels (groups without a label are left out of these):
    labels/pseudo_label_accuracy  the majority answer is right (groups without a majority are left out)
    labels/maj_at_g               the majority answer is right, a group without a majority counting as wrong (maj@G)
    labels/pass_at_g              at least one completion of the group is right (pass@G)
    labels/rollout_accuracy       share of the group's completions that are right (pass@1 of the samples)
    labels/reward_accuracy        share of completions where the majority-vote reward (1 in the majority, else 0)
                                  equals the true reward (1 if right, else 0), as in TTRL

Abstentions are never right. With `abstain_as_answer` the missing answers form the class "None": they count in
p_max, the entropy and the distinct answers (as the released code counts them), and still as abstentions.

By kind of question (`docs/math.md#diagnostics-kinds`): once a run has seen both image questions and text-only ones
(rows without images), each of these metrics is also logged over the groups of one kind, `<metric>/image` and
`<metric>/text` (`split_by_kind`, `DiagnosticsByKind`). A run with one kind logs none of them.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from ..rewards import get_reward_function
from ..rewards.format import DEFAULT_FORMAT_PATTERN, matches_format
from ..voting import GroupVote, abstained, correctness, usable_label

HIGH_CONFIDENCE = 0.8
ANSWER_SETTINGS = ("extractor", "match", "abstain_as_answer", "tie")  # the keyword arguments of a vote

LABEL_FREE_METRICS = (
    "self_consistency/majority_ratio",
    "self_consistency/high_confidence_share",
    "self_consistency/answer_entropy",
    "self_consistency/distinct_answers",
    "self_consistency/abstention_rate",
    "self_consistency/format_violation_rate",
)
LABEL_METRICS = (
    "labels/pseudo_label_accuracy",
    "labels/maj_at_g",
    "labels/pass_at_g",
    "labels/rollout_accuracy",
    "labels/reward_accuracy",
)
KINDS = ("image", "text")  # the kinds of question the diagnostics are split by, a metric name's last part


def entropy(counts: dict[Any, int]) -> float:
    """Entropy in nats of the distribution given by `counts` (0 for no counts)."""
    total = sum(counts.values())
    return -sum(n / total * math.log(n / total) for n in counts.values() if n) if total else 0.0


def per_group_diagnostics(
    votes: Sequence[GroupVote],
    completions: Sequence[Any],
    labels: Sequence[Any] | None = None,
    match: str = "math",
    format_pattern: str = DEFAULT_FORMAT_PATTERN,
    abstain_as_answer: bool = False,
) -> dict[str, list[float]]:
    """Every diagnostic, one value per group (NaN where it is undefined for that group).

    The label metrics are present only when at least one group has a label. Since all groups have the same size,
    the mean of the finite values of a list is the metric over all groups (and completions) together; the trainer
    logs these lists so that TRL's averaging over a logging step (or an evaluation) is exact.

    Args:
        votes: one `GroupVote` per group, in order (see `voting.vote_groups`).
        completions: all completions, group after group (for the format check).
        labels: one reference answer per *group* (`None` where unknown), or None for no labels at all.
        match: answer equivalence used against the labels.
        format_pattern: the output format counted by `format_violation_rate`.
        abstain_as_answer: whether the votes were taken with missing answers as the class "None".
    """
    if labels is not None and len(labels) != len(votes):
        raise ValueError(f"{len(labels)} labels for {len(votes)} groups: give one label per group.")
    metrics: dict[str, list[float]] = {name: [] for name in LABEL_FREE_METRICS}
    group_labels = [usable_label(label) for label in labels] if labels is not None else [None] * len(votes)
    with_labels = any(label is not None for label in group_labels)
    if with_labels:
        metrics.update({name: [] for name in LABEL_METRICS})
    start = 0
    for vote, label in zip(votes, group_labels):
        size = vote.size
        group_completions = completions[start : start + size]
        start += size
        no_answer = [abstained(a, c, abstain_as_answer) for a, c in zip(vote.answers, vote.classes)]
        metrics["self_consistency/majority_ratio"].append(vote.p_max)
        metrics["self_consistency/high_confidence_share"].append(float(vote.p_max >= HIGH_CONFIDENCE))
        metrics["self_consistency/answer_entropy"].append(entropy(vote.counts))
        metrics["self_consistency/distinct_answers"].append(float(len(vote.counts)))
        metrics["self_consistency/abstention_rate"].append(sum(no_answer) / size)
        metrics["self_consistency/format_violation_rate"].append(
            sum(not matches_format(c, format_pattern) for c in group_completions) / size
        )
        if not with_labels:
            continue
        if label is None:
            for name in LABEL_METRICS:
                metrics[name].append(math.nan)
            continue
        right = correctness(vote, label, match, abstain_as_answer)
        majority_right = vote.majority is not None and right[vote.classes.index(vote.majority)]
        in_majority = [cls is not None and cls == vote.majority for cls in vote.classes]
        metrics["labels/pseudo_label_accuracy"].append(math.nan if vote.majority is None else float(majority_right))
        metrics["labels/maj_at_g"].append(float(majority_right))
        metrics["labels/pass_at_g"].append(float(any(right)))
        metrics["labels/rollout_accuracy"].append(sum(right) / size)
        metrics["labels/reward_accuracy"].append(sum(m == r for m, r in zip(in_majority, right)) / size)
    if start != len(completions):
        raise ValueError(f"The votes cover {start} completions but {len(completions)} were given.")
    return metrics


def finite_mean(values: Sequence[float]) -> float:
    """Mean of the finite values (NaN when there are none), as TRL averages logged metrics."""
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan


def group_diagnostics(
    votes: Sequence[GroupVote],
    completions: Sequence[Any],
    labels: Sequence[Any] | None = None,
    match: str = "math",
    format_pattern: str = DEFAULT_FORMAT_PATTERN,
    abstain_as_answer: bool = False,
) -> dict[str, float]:
    """Diagnostics of one batch of groups: the mean over groups of `per_group_diagnostics` (same arguments).

    Example:

    ```python
    >>> from self_evolve_trl.voting import vote_groups
    >>> group = ["\\\\boxed{4}", "\\\\boxed{4}", "\\\\boxed{4}", "\\\\boxed{4}", "\\\\boxed{5}"]
    >>> d = group_diagnostics(vote_groups(group, 5), group, labels=["5"], format_pattern=".*")
    >>> d["self_consistency/majority_ratio"], d["self_consistency/high_confidence_share"], d["labels/maj_at_g"]
    (0.8, 1.0, 0.0)
    >>> d["labels/pass_at_g"], d["labels/rollout_accuracy"], d["labels/reward_accuracy"]
    (1.0, 0.2, 0.0)

    ```
    """
    per_group = per_group_diagnostics(votes, completions, labels, match, format_pattern, abstain_as_answer)
    return {name: finite_mean(values) for name, values in per_group.items()}


def row_kind(row: dict[str, Any]) -> str:
    """`image` for a dataset row with images (`images` not empty, or an `image`), `text` for a text-only row.

    ```python
    >>> row_kind({"prompt": "...", "images": ["<PIL image>"]}), row_kind({"images": []}), row_kind({"image": None})
    ('image', 'text', 'text')

    ```
    """
    return "image" if row.get("images") or row.get("image") is not None else "text"


def split_by_kind(
    per_group: dict[str, list[float]], kinds: Sequence[str], labelled: Sequence[bool]
) -> dict[str, list[float]]:
    """The diagnostics of `per_group_diagnostics` (one value per group) split by the kind of each group's question
    (`kinds`, one of `KINDS` per group): `<metric>/<kind>` for every kind present, with the values of that kind's
    groups; the label metrics of a kind only where one of its groups has a label (`labelled`, one flag per group).
    Other metrics in `per_group` are left out.

    Example:

    ```python
    >>> per_group = {"self_consistency/majority_ratio": [1.0, 0.5, 0.75], "labels/maj_at_g": [1.0, math.nan, 0.0]}
    >>> split = split_by_kind(per_group, ["image", "text", "image"], [True, False, True])
    >>> split["self_consistency/majority_ratio/image"], split["self_consistency/majority_ratio/text"]
    ([1.0, 0.75], [0.5])
    >>> split["labels/maj_at_g/image"], "labels/maj_at_g/text" in split  # no text question has a label
    ([1.0, 0.0], False)

    ```
    """
    sizes = {len(values) for name, values in per_group.items() if name in LABEL_FREE_METRICS + LABEL_METRICS}
    if sizes - {len(kinds)} or len(labelled) != len(kinds):
        groups = ", ".join(map(str, sorted(sizes)))
        raise ValueError(f"{len(kinds)} kinds and {len(labelled)} label flags for diagnostics of {groups} groups: "
                         "give one of each per group.")
    split: dict[str, list[float]] = {}
    for names, needs_label in ((LABEL_FREE_METRICS, False), (LABEL_METRICS, True)):
        for kind in KINDS:
            groups = [g for g, k in enumerate(kinds) if k == kind]
            if not groups or (needs_label and not any(labelled[g] for g in groups)):
                continue
            for name in names:
                if name in per_group:
                    split[f"{name}/{kind}"] = [per_group[name][g] for g in groups]
    return split


class DiagnosticsByKind:
    """The diagnostics by kind of question (`split_by_kind`) of one run, logged once it has seen both kinds.

    `add` keeps each generation batch's values, per mode (`train`, `eval`); `flush`, just before a log, moves those
    of the logging step into the metrics that TRL averages, once both kinds have been seen in that mode, else drops
    them (a run with one kind logs nothing more). So every logging step of a mixed run is exact, the one where the
    second kind first comes included. The kinds seen are saved with every checkpoint (`state_dict`).
    """

    def __init__(self):
        self.seen: dict[str, set[str]] = {"train": set(), "eval": set()}
        self.pending: dict[str, dict[str, list[float]]] = {"train": defaultdict(list), "eval": defaultdict(list)}

    def add(self, mode: str, kinds: Sequence[str], split: dict[str, list[float]]) -> None:
        """One generation batch: the kinds of its groups, and its diagnostics split by kind."""
        self.seen[mode].update(kinds)
        for name, values in split.items():
            self.pending[mode][name].extend(values)

    def flush(self, mode: str, metrics: dict[str, list[float]]) -> None:
        """Extend `metrics` (TRL's `_metrics[mode]`) by the values kept since the last log, if both kinds were seen."""
        if self.seen[mode] >= set(KINDS):
            for name, values in self.pending[mode].items():
                metrics[name].extend(values)
        self.pending[mode].clear()

    def state_dict(self) -> dict[str, list[str]]:
        return {mode: sorted(kinds) for mode, kinds in self.seen.items()}

    def load_state_dict(self, state: dict[str, list[str]]) -> None:
        self.seen = {mode: set(state.get(mode, ())) for mode in self.seen}


def format_pattern_of(reward_funcs: Sequence[Any]) -> str:
    """The output format the diagnostics check: the `pattern` bound to the recipe's `format` reward, or a
    `format_pattern` bound to any reward (e.g. a judge reward with a format term), else the default pattern."""
    for function in reward_funcs:
        kwargs = getattr(function, "kwargs", None) or {}
        if getattr(function, "name", None) == "format" and kwargs.get("pattern"):
            return kwargs["pattern"]
    for function in reward_funcs:
        kwargs = getattr(function, "kwargs", None) or {}
        if kwargs.get("format_pattern"):
            return kwargs["format_pattern"]
    return DEFAULT_FORMAT_PATTERN


def reward_vote_settings(function: Any, defaults: dict[str, Any]) -> dict[str, Any] | None:
    """The answer settings a reward function votes with: the ones bound to it (its `reward_kwargs`), else `defaults`
    (the config's, which the trainer passes); None for a reward that takes none of them (it does not vote).

    A reward that wraps a base reward (keyword arguments `base_reward` and `base_kwargs`, as `judge_modulated`)
    votes as its base reward, which gets the wrapper's settings unless its `base_kwargs` bind their own.
    """
    parameters = getattr(function, "parameters", set())
    if not isinstance(parameters, (set, frozenset)) or not parameters & set(ANSWER_SETTINGS):  # e.g. a reward model
        return None
    kwargs = getattr(function, "kwargs", {})
    settings = {name: kwargs.get(name, defaults[name]) for name in ANSWER_SETTINGS}
    if {"base_reward", "base_kwargs"} <= parameters:
        base_name = kwargs.get("base_reward", function.signature.parameters["base_reward"].default)
        base = get_reward_function(base_name, **(kwargs.get("base_kwargs") or {}))
        return reward_vote_settings(base, settings) or settings
    return settings


def vote_settings(
    reward_funcs: Sequence[Any], defaults: dict[str, Any]
) -> tuple[dict[str, Any], str | None, list[str]]:
    """The answer settings the diagnostics vote with: those of the first reward function that votes (in
    `reward_funcs` order), else `defaults` (the config's). Returns (settings, the name of that reward or None, the
    names of the other voting rewards whose settings differ: the diagnostics do not describe their votes).

    Example:

    ```python
    >>> from self_evolve_trl.rewards import get_reward_function
    >>> config = {"extractor": "boxed", "match": "math", "abstain_as_answer": False, "tie": "first"}
    >>> rewards = [get_reward_function("format"), get_reward_function("majority_vote", extractor="answer_tag")]
    >>> settings, followed, differing = vote_settings(rewards, config)
    >>> settings["extractor"], followed, differing
    ('answer_tag', 'majority_vote', [])

    ```
    """
    voting = [(f, s) for f in reward_funcs if (s := reward_vote_settings(f, defaults)) is not None]
    if not voting:
        return dict(defaults), None, []
    (first, settings), others = voting[0], voting[1:]
    return settings, first.name, [f.name for f, s in others if s != settings]


def vote_settings_note(reward_funcs: Sequence[Any], defaults: dict[str, Any]) -> str | None:
    """One line when reward functions vote with different answer settings (the diagnostics follow the first), else
    None: the training's warning and `cli check`'s."""
    _, followed, differing = vote_settings(reward_funcs, defaults)
    if not differing:
        return None
    return (
        f"the diagnostics (self_consistency/*, labels/*) vote with the answer settings of the {followed!r} reward; "
        f"{', '.join(repr(name) for name in differing)} vote(s) with other settings, which they do not describe."
    )
