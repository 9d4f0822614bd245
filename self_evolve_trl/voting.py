"""Group votes: the answers of a group of completions counted by equivalence class (docs/math.md, "Answers").

Shared by the consistency rewards and the training diagnostics, so both count the same way; `correctness` compares
a vote's answers with a reference answer (for the diagnostics, never for a reward).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from .answers import answer_classes, extract_answer, is_equivalent


TIE_RULES = ("first", "none")
ABSTAIN_CLASS_ANSWER = "None"  # the literal class of missing answers when `abstain_as_answer` is on


@dataclass
class GroupVote:
    """The vote of one group of G completions.

    Attributes:
        answers: extracted answer per completion (`None` = abstention).
        classes: equivalence class id per completion (`None` = abstention); ids count from 0 in order of appearance.
        counts: completions per class id.
        majority: the majority class id, or `None` (no answers, or a tie under `tie="none"`).
    """

    answers: list[str | None]
    classes: list[int | None]
    counts: dict[int, int]
    majority: int | None

    @property
    def size(self) -> int:
        return len(self.classes)

    @property
    def frequencies(self) -> list[float]:
        """p_i = c(a_i) / G for each completion; 0 for abstentions."""
        return [self.counts[c] / self.size if c is not None else 0.0 for c in self.classes]

    @property
    def p_max(self) -> float:
        """Share of the group in the largest class (0 when every completion abstains)."""
        return max(self.counts.values()) / self.size if self.counts else 0.0

    @property
    def majority_answer(self) -> str | None:
        if self.majority is None:
            return None
        return self.answers[self.classes.index(self.majority)]


def vote(answers: list[str | None], match: str = "math", tie: str = "first") -> GroupVote:
    """Count one group's answers by equivalence class and find its majority class.

    Example:

    ```python
    >>> v = vote(["1/2", "0.5", "3", None])
    >>> v.classes, v.majority, v.frequencies
    ([0, 0, 1, None], 0, [0.5, 0.5, 0.25, 0.0])

    ```
    """
    if tie not in TIE_RULES:
        raise ValueError(f"Unknown tie rule {tie!r}; valid rules: {', '.join(TIE_RULES)}.")
    classes = answer_classes(answers, match=match)
    counts = Counter(c for c in classes if c is not None)
    majority = None
    if counts:
        top = max(counts.values())
        leaders = sorted(c for c, n in counts.items() if n == top)  # class ids are in order of first appearance
        if len(leaders) == 1 or tie == "first":
            majority = leaders[0]
    return GroupVote(answers=answers, classes=classes, counts=dict(counts), majority=majority)


def check_groups(n: int, group_size: int) -> None:
    if group_size is None or group_size < 1:
        raise ValueError(f"group_size must be a positive integer, got {group_size!r}.")
    if n % group_size != 0:
        raise ValueError(
            f"{n} completions do not make whole groups of {group_size}: group rewards need whole groups, in order."
        )


def extract_answers(completions: list[Any], extractor: str = "boxed", abstain_as_answer: bool = False) -> list:
    """The answer of each completion, as votes count it: with `abstain_as_answer`, a missing answer becomes the
    literal class `"None"` (the released codebases' behaviour) instead of an abstention."""
    answers = [extract_answer(c, extractor) for c in completions]
    return [ABSTAIN_CLASS_ANSWER if a is None else a for a in answers] if abstain_as_answer else answers


def vote_groups(
    completions: list[Any],
    group_size: int,
    extractor: str = "boxed",
    match: str = "math",
    abstain_as_answer: bool = False,
    tie: str = "first",
) -> list[GroupVote]:
    """Extract the answers of consecutive groups of `group_size` completions and vote within each group.

    With `abstain_as_answer`, a missing answer becomes the literal class `"None"` (the released codebases'
    behaviour) instead of an abstention.
    """
    check_groups(len(completions), group_size)
    answers = extract_answers(completions, extractor, abstain_as_answer)
    return [vote(answers[i : i + group_size], match=match, tie=tie) for i in range(0, len(answers), group_size)]


def usable_label(label: Any) -> str | None:
    """A usable reference answer, or None (missing or blank)."""
    if label is None:
        return None
    text = str(label).strip()
    return text or None


def abstained(answer: str | None, cls: int | None, abstain_as_answer: bool) -> bool:
    """Whether an answer counts as no answer: no class, or the literal "None" class with `abstain_as_answer`."""
    return cls is None or (abstain_as_answer and answer == ABSTAIN_CLASS_ANSWER)


def correctness(
    vote: GroupVote, label: Any, match: str = "math", abstain_as_answer: bool = False
) -> list[bool] | None:
    """Whether each completion's answer equals the label (compared once per class); None without a label.

    Example:

    ```python
    >>> from self_evolve_trl.voting import vote
    >>> correctness(vote(["0.5", "1/2", "3", None]), "\\\\frac{1}{2}")
    [True, True, False, False]

    ```
    """
    label = usable_label(label)
    if label is None:
        return None
    right_by_class: dict[int, bool] = {}
    result = []
    for answer, cls in zip(vote.answers, vote.classes):
        if abstained(answer, cls, abstain_as_answer):
            result.append(False)
            continue
        if cls not in right_by_class:
            right_by_class[cls] = is_equivalent(answer, label, match)
        result.append(right_by_class[cls])
    return result
