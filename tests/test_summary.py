"""The end-of-run summary on hand-made log histories: trends, held-out evaluation, the collapse warning."""

import pytest

from self_evolve_trl.summary import format_summary, summarize_log_history, write_summary


def history(**series):
    """Training log entries, one per step, from per-metric lists (None = not logged at that step)."""
    n = len(next(iter(series.values())))
    entries = []
    for i in range(n):
        entry = {"step": i + 1, "reward": 0.1 * i}
        entry.update({key.replace("__", "/"): values[i] for key, values in series.items() if values[i] is not None})
        entries.append(entry)
    return entries


COLLAPSING = history(
    self_consistency__high_confidence_share=[0.0, 0.0, 0.1, 0.2, 0.5, 0.8, 0.9, 1.0],
    self_consistency__majority_ratio=[0.4, 0.45, 0.5, 0.6, 0.8, 0.9, 0.95, 1.0],
    entropy=[2.0, 2.0, 1.9, 1.8, 1.2, 0.8, 0.5, 0.4],
    completions__mean_length=[100, 100, 98, 99, 97, 99, 100, 98],
)


def test_collapse_warning():
    summary = summarize_log_history(COLLAPSING)
    warning = summary["collapse_warning"]
    assert warning["high_confidence_rise"] == pytest.approx(0.95)  # last quarter 0.95, first quarter 0.0
    assert warning["falls"] == {"token entropy": pytest.approx(0.775)}  # 2.0 -> 0.45; the length did not fall
    text = format_summary(summary)
    assert "WARNING: possible collapse: groups with p_max >= 0.8 rose 0.00 -> 0.95; token entropy fell 2 -> 0.45 (-78%)" in text


def test_collapse_warning_names_the_pseudo_label_accuracy_when_labelled():
    labelled = [dict(e, **{"labels/pseudo_label_accuracy": a}) for e, a in zip(COLLAPSING, [0.6] * 4 + [0.3] * 4)]
    assert "pseudo-label accuracy 0.60 -> 0.30" in summarize_log_history(labelled)["collapse_warning"]["message"]


def test_no_warning_without_a_fall_or_without_a_rise():
    confident_but_lively = history(
        self_consistency__high_confidence_share=[0.0, 0.0, 0.5, 1.0],
        entropy=[2.0, 2.0, 1.9, 1.8],  # -10%
        completions__mean_length=[100, 90, 95, 80],  # -20%
    )
    assert "collapse_warning" not in summarize_log_history(confident_but_lively)
    shrinking_but_diverse = history(
        self_consistency__high_confidence_share=[0.1, 0.1, 0.2, 0.3],  # +0.2
        entropy=[2.0, 1.5, 1.0, 0.5],
    )
    assert "collapse_warning" not in summarize_log_history(shrinking_but_diverse)


def test_first_last_and_trend():
    summary = summarize_log_history(COLLAPSING)
    stats = summary["metrics"]["entropy"]
    assert (stats["first"], stats["last"], stats["min"], stats["max"]) == (2.0, 0.4, 0.4, 2.0)
    assert stats["trend"] == "falling"
    assert summary["metrics"]["self_consistency/majority_ratio"]["trend"] == "rising"
    assert summary["metrics"]["completions/mean_length"]["trend"] == "flat"
    assert summary["steps"] == 8
    line = next(line for line in format_summary(summary).splitlines() if "token entropy" in line)
    assert line.endswith("2.000 ->    0.450  falling")  # means of the first and the last two of 8 steps


def test_label_metrics_only_when_present_and_none_values_skipped():
    unlabelled = format_summary(summarize_log_history(COLLAPSING))
    assert "hidden labels" not in unlabelled and "Held-out" not in unlabelled
    labelled = history(
        self_consistency__majority_ratio=[0.5, 0.6, 0.7],
        labels__pseudo_label_accuracy=[None, 0.5, 1.0],  # TRL logs None when no group had a majority
    )
    summary = summarize_log_history(labelled)
    assert summary["metrics"]["labels/pseudo_label_accuracy"]["first"] == 0.5
    assert "pseudo-label accuracy (hidden labels)" in format_summary(summary)


def test_held_out_evaluation_names_the_best_step():
    log = history(self_consistency__majority_ratio=[0.5] * 4)
    for step, maj, pass1 in [(1, 0.2, 0.1), (2, 0.5, 0.3), (3, 0.5, 0.4), (4, 0.3, 0.2)]:
        log.append({"step": step, "eval_loss": 0.0, "eval_labels/maj_at_g": maj, "eval_labels/rollout_accuracy": pass1})
    summary = summarize_log_history(log)
    assert summary["eval"]["eval_labels/maj_at_g"] == {
        "first": 0.2, "last": 0.3, "best": 0.5, "best_step": 2, "evaluations": 4,  # the earliest of equal bests
    }
    text = format_summary(summary)
    assert "Held-out evaluation (4 evaluations):" in text
    line = next(line for line in text.splitlines() if "eval maj@k" in line)
    assert line.endswith("0.200 ->    0.300  best 0.500 at step 2")
    assert "eval pass@1 (sampled)" in text and "best 0.400 at step 3" in text


def test_write_summary(tmp_path):
    text = write_summary(str(tmp_path / "run"), COLLAPSING + [{"train_runtime": 12.3, "train_loss": 0.5, "step": 8}])
    assert text.startswith("Run summary: 8 steps in 12s")
    assert (tmp_path / "run" / "summary.txt").read_text() == text + "\n"
    assert '"collapse_warning"' in (tmp_path / "run" / "summary.json").read_text()
