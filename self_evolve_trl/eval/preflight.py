"""The pre-flight check (`--preflight`): on a small labelled dev split, is label-free training likely to help?

Consistency rewards train towards the majority answer of a group of samples. They teach right answers when that
majority is right more often than not, and wrong answers when it is not. So the check samples k answers per question
and estimates the **pseudo-label accuracy**: the share of questions, among those whose samples have a majority,
whose majority answer is right: the label a majority-vote reward would use. It reports it next to greedy pass@1,
maj@k, their gap and pass@k, and a verdict by `PREFLIGHT_RULE` (docs/math.md#preflight; the evidence behind the
thresholds is in README.md, "Will it work on my data?").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

HELP = "likely to help"
HURT = "likely to hurt"
UNCERTAIN = "uncertain"


@dataclass(frozen=True)
class PreflightRule:
    """The thresholds of the verdict, in one place (fractions, not percent).

    Attributes:
        help_label_accuracy: "likely to help" needs a pseudo-label accuracy at least this high ...
        min_gap: ... and maj@k at least this far above greedy pass@1 (something for the vote to teach).
        hurt_label_accuracy: "likely to hurt" below this pseudo-label accuracy: the majority is wrong more often
            than right. In between, "uncertain".
    """

    help_label_accuracy: float = 0.6
    min_gap: float = 0.05
    hurt_label_accuracy: float = 0.5


PREFLIGHT_RULE = PreflightRule()


@dataclass(frozen=True)
class Verdict:
    """The verdict (`HELP`, `HURT` or `UNCERTAIN`) and the reason, in one sentence."""

    verdict: str
    reason: str


def preflight_verdict(
    pass_at_1: float, maj_at_k: float, label_accuracy: float | None, rule: PreflightRule = PREFLIGHT_RULE
) -> Verdict:
    """Whether label-free training is likely to help, from greedy pass@1, maj@k and the estimated pseudo-label
    accuracy (fractions; `label_accuracy` None when no question's samples had a majority).

    Example:

    ```python
    >>> preflight_verdict(0.545, 0.80, 0.80).verdict
    'likely to help'
    >>> preflight_verdict(0.225, 0.285, 0.30).verdict
    'likely to hurt'
    >>> preflight_verdict(0.50, 0.55, 0.55).verdict
    'uncertain'

    ```
    """
    if label_accuracy is None:
        return Verdict(UNCERTAIN, "no sample gave an answer the rules could read, so there is no majority to learn "
                                  "from: check the instruction and the answer format first")
    gap = maj_at_k - pass_at_1
    if label_accuracy < rule.hurt_label_accuracy:
        return Verdict(HURT, f"the majority answer is right for only {label_accuracy:.2f} of the questions (below "
                             f"{rule.hurt_label_accuracy:.2f}): consistency rewards would mostly teach wrong answers")
    if label_accuracy >= rule.help_label_accuracy and gap >= rule.min_gap:
        return Verdict(HELP, f"the majority answer is right for {label_accuracy:.2f} of the questions (at least "
                             f"{rule.help_label_accuracy:.2f}) and beats greedy pass@1 by {gap:+.2f} (at least "
                             f"{rule.min_gap:+.2f}): there is a right majority to learn from")
    if label_accuracy >= rule.help_label_accuracy:
        return Verdict(UNCERTAIN, f"the majority answer is mostly right ({label_accuracy:.2f}) but beats greedy "
                                  f"pass@1 by only {gap:+.2f} (less than {rule.min_gap:+.2f}): little to gain")
    return Verdict(UNCERTAIN, f"the majority answer is right for {label_accuracy:.2f} of the questions, between "
                              f"{rule.hurt_label_accuracy:.2f} and {rule.help_label_accuracy:.2f}: too close to call")


def preflight_report(
    greedy_correct: Sequence[bool], sample_correct: Sequence[Sequence[bool]], majority_correct: Sequence[bool],
    has_majority: Sequence[bool], rule: PreflightRule = PREFLIGHT_RULE,
) -> dict:
    """The estimates (fractions over the questions), the verdict and the rule, as results.json's `preflight`.

    Example (two questions, k = 2: the first answered right by the majority, the second by one sample only):

    ```python
    >>> report = preflight_report([True, False], [[True, True], [False, True]], [True, False], [True, True])
    >>> report["pass_at_1"], report["maj_at_k"], report["pass_at_k"], report["label_accuracy"], report["verdict"]
    (0.5, 0.5, 1.0, 0.5, 'uncertain')

    ```
    """
    n = len(greedy_correct)
    share = lambda flags: sum(bool(f) for f in flags) / n if n else 0.0
    labelled = sum(bool(h) for h in has_majority)
    right_labels = sum(bool(m) for m, h in zip(majority_correct, has_majority) if h)
    label_accuracy = right_labels / labelled if labelled else None
    se = math.sqrt(label_accuracy * (1 - label_accuracy) / labelled) if labelled else None
    pass_at_1, maj_at_k = share(greedy_correct), share(majority_correct)
    verdict = preflight_verdict(pass_at_1, maj_at_k, label_accuracy, rule)
    return {
        "n": n, "k": len(sample_correct[0]) if sample_correct else 0,
        "pass_at_1": pass_at_1, "sampled_pass_at_1": sum(sum(map(bool, c)) / len(c) for c in sample_correct) / n
        if n else 0.0,
        "maj_at_k": maj_at_k, "gap": maj_at_k - pass_at_1, "pass_at_k": share(any(c) for c in sample_correct),
        "label_accuracy": label_accuracy, "label_accuracy_se": se, "labelled_share": labelled / n if n else 0.0,
        "verdict": verdict.verdict, "reason": verdict.reason, "rule": asdict(rule),
    }


def preflight_lines(benchmarks: dict) -> list[str]:
    """results.md's pre-flight section: per benchmark the estimates and the verdict with its reason."""
    entries = {name: entry["preflight"] for name, entry in benchmarks.items() if "preflight" in entry}
    if not entries:
        return []
    header = ("| Benchmark | n | greedy pass@1 | maj@k | gap | pass@k | pseudo-label acc. (questions with a majority) "
              "| verdict |")
    lines = ["", "## Pre-flight: will label-free training help?", "", header, "|---|---:|---:|---:|---:|---:|---:|---|"]
    for name, p in entries.items():
        accuracy = "n/a" if p["label_accuracy"] is None else f"{p['label_accuracy']:.3f}"
        lines.append(f"| {benchmarks[name]['title']} | {p['n']} | {p['pass_at_1']:.3f} | {p['maj_at_k']:.3f} "
                     f"(k={p['k']}) | {p['gap']:+.3f} | {p['pass_at_k']:.3f} | {accuracy} "
                     f"({p['labelled_share']:.2f}) | **{p['verdict']}** |")
    rule = next(iter(entries.values()))["rule"]
    lines += [""] + [f"- {benchmarks[name]['title']}: {p['verdict']}: {p['reason']}." for name, p in entries.items()]
    rule_line = (f"Rule: likely to help when the pseudo-label accuracy is at least {rule['help_label_accuracy']} and "
                 f"maj@k - pass@1 at least {rule['min_gap']}; likely to hurt when it is below "
                 f"{rule['hurt_label_accuracy']}; uncertain otherwise. Each estimate is over that benchmark's "
                 "questions, so with few of them it is rough: results.json gives its standard error "
                 "(label_accuracy_se).")
    lines += ["", rule_line, ""]
    return lines
