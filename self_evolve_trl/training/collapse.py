"""The collapse check: a verdict on a run whose policy grows confident (see `docs/math.md`, "Diagnostics").

Collapse (label-free training converging on its own early majority) shows as the share of confident groups
(p_max >= 0.8) rising fast while the token entropy or the completion length falls. But convergence on the right
answers looks the same (BENCHMARKS.md, "Self-evolution in miniature": the best runs' share rises 18 -> 72 % and
their length halves); only the accuracy of the pseudo-labels tells the two apart. The check fires when, from the
first to the last quarter of the logged steps, the high-confidence share rises by at least `COLLAPSE_MIN_RISE` and
the token entropy or the completion length falls by at least `COLLAPSE_MIN_RELATIVE_FALL` of its first value; then

- with hidden labels: `collapse` (a warning) unless the pseudo-label accuracy rises with it (its last-quarter mean
  above the first-quarter mean by more than `summary.FLAT_RELATIVE_CHANGE`, the summary's "rising"), else
  `converging`;
- without: `collapse or convergence` (a warning that labels or a held-out evaluation tell which; the held-out
  maj@k is quoted when the run has one).
"""

from __future__ import annotations

from typing import Any

COLLAPSE_MIN_RISE = 0.3
COLLAPSE_MIN_RELATIVE_FALL = 0.25


def collapse_check(
    metrics: dict[str, dict[str, Any]], evals: dict[str, dict[str, Any]] | None = None
) -> dict[str, Any] | None:
    """The verdict on a run whose policy grows confident (`collapse`, `converging` or `collapse or convergence`),
    from the summary statistics of the training metrics (and of the held-out evaluations, quoted without labels);
    None when confidence does not rise with a fall of entropy or length (or the run does not log what it needs).

    Example (the first and last quarters of an 8-step run):

    ```python
    >>> stats = lambda first, last, trend: {"first_quarter_mean": first, "last_quarter_mean": last, "trend": trend}
    >>> metrics = {"self_consistency/high_confidence_share": stats(0.18, 0.72, "rising"),
    ...            "completions/mean_length": stats(14.3, 7.1, "falling")}
    >>> collapse_check(metrics)["verdict"]
    'collapse or convergence'
    >>> collapse_check({**metrics, "labels/pseudo_label_accuracy": stats(0.74, 0.85, "rising")})["verdict"]
    'converging'
    >>> collapse_check({**metrics, "labels/pseudo_label_accuracy": stats(0.64, 0.52, "falling")})["verdict"]
    'collapse'

    ```
    """
    confident = metrics.get("self_consistency/high_confidence_share")
    if confident is None:
        return None
    rise = confident["last_quarter_mean"] - confident["first_quarter_mean"]
    if rise < COLLAPSE_MIN_RISE:
        return None
    falls = entropy_and_length_falls(metrics)
    if not falls:
        return None
    parts = [
        f"groups with p_max >= 0.8 rose {confident['first_quarter_mean']:.2f} -> {confident['last_quarter_mean']:.2f}"
    ]
    parts += [f"{name} fell {a:.3g} -> {b:.3g} (-{fall:.0%})" for name, (a, b, fall) in falls.items()]
    evidence = "; ".join(parts)
    result: dict[str, Any] = {"high_confidence_rise": rise, "falls": {k: v[2] for k, v in falls.items()}}
    pseudo = metrics.get("labels/pseudo_label_accuracy")
    if pseudo is not None:
        result["pseudo_label_accuracy"] = [pseudo["first_quarter_mean"], pseudo["last_quarter_mean"]]
        result["verdict"], result["message"] = labelled_verdict(evidence, pseudo)
    else:
        result["verdict"], result["message"] = unlabelled_verdict(evidence, evals)
    return result


def entropy_and_length_falls(metrics: dict[str, dict[str, Any]]) -> dict[str, tuple[float, float, float]]:
    """The token entropy and the completion length where they fell by at least `COLLAPSE_MIN_RELATIVE_FALL`:
    name -> (first-quarter mean, last-quarter mean, relative fall)."""
    falls = {}
    for key, name in (("entropy", "token entropy"), ("completions/mean_length", "completion length")):
        stats = metrics.get(key)
        if stats is None or stats["first_quarter_mean"] <= 0:
            continue
        fall = 1 - stats["last_quarter_mean"] / stats["first_quarter_mean"]
        if fall >= COLLAPSE_MIN_RELATIVE_FALL:
            falls[name] = (stats["first_quarter_mean"], stats["last_quarter_mean"], fall)
    return falls


def labelled_verdict(evidence: str, pseudo: dict[str, Any]) -> tuple[str, str]:
    """`converging` or `collapse`, and the message, by the trend of the pseudo-label accuracy (hidden labels)."""
    accuracy = f"pseudo-label accuracy {pseudo['first_quarter_mean']:.2f} -> {pseudo['last_quarter_mean']:.2f}"
    if pseudo["trend"] == "rising":
        return "converging", (
            f"Converging, not collapsing: {evidence}, and the {accuracy} (hidden labels) rose with them: the "
            "policy is growing confident in answers that are right more often."
        )
    return "collapse", (
        f"WARNING: collapse: {evidence}, while the {accuracy} (hidden labels) did not rise: the policy is "
        "converging on its own early majority, not on right answers. Consider an earlier checkpoint, a lower "
        "learning rate or a larger KL coefficient (beta)."
    )


def unlabelled_verdict(evidence: str, evals: dict[str, dict[str, Any]] | None) -> tuple[str, str]:
    """`collapse or convergence` and its message, quoting the held-out maj@k where the run evaluated more than once."""
    held_out = (evals or {}).get("eval_labels/maj_at_g")
    quoted = (
        f" Held-out maj@k went {held_out['first']:.2f} -> {held_out['last']:.2f} over {held_out['evaluations']} "
        "evaluations."
        if held_out is not None and held_out["evaluations"] > 1 else ""
    )
    return "collapse or convergence", (
        "WARNING: confidence rising while entropy/length fall: collapse or convergence; labels or a held-out "
        f"eval (eval_strategy) tell which. {evidence}.{quoted}"
    )
