"""The end-of-run summary on hand-made log histories: trends, held-out evaluation, the collapse warning."""

import json

import pytest

from self_evolve_trl.training.summary import format_summary, summarize_log_history, write_summary


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


def test_collapse_without_labels_is_worded_as_a_heuristic():
    summary = summarize_log_history(COLLAPSING)
    check = summary["collapse_check"]
    assert check["verdict"] == "collapse or convergence"
    assert check["high_confidence_rise"] == pytest.approx(0.95)  # last quarter 0.95, first quarter 0.0
    assert check["falls"] == {"token entropy": pytest.approx(0.775)}  # 2.0 -> 0.45; the length did not fall
    text = " ".join(format_summary(summary).split())  # the message is wrapped to the summary's width
    assert ("WARNING: confidence rising while entropy/length fall: collapse or convergence; labels or a held-out eval "
            "(eval_strategy) tell which. groups with p_max >= 0.8 rose 0.00 -> 0.95; token entropy fell 2 -> 0.45 "
            "(-78%).") in text
    assert "WARNING: collapse:" not in text and "Converging" not in text


def with_pseudo_label_accuracy(entries, values):
    return [dict(e, **{"labels/pseudo_label_accuracy": a}) for e, a in zip(entries, values)]


def test_collapse_with_labels_needs_the_pseudo_label_accuracy_not_to_rise():
    for values in ([0.6] * 4 + [0.3] * 4, [0.6] * 8, [0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.62, 0.62]):  # falls, flat, +3 %
        summary = summarize_log_history(with_pseudo_label_accuracy(COLLAPSING, values))
        assert summary["collapse_check"]["verdict"] == "collapse", values
    summary = summarize_log_history(with_pseudo_label_accuracy(COLLAPSING, [0.6] * 4 + [0.3] * 4))
    assert summary["collapse_check"]["pseudo_label_accuracy"] == [pytest.approx(0.6), pytest.approx(0.3)]
    text = " ".join(format_summary(summary).split())
    assert ("WARNING: collapse: groups with p_max >= 0.8 rose 0.00 -> 0.95; token entropy fell 2 -> 0.45 (-78%), "
            "while the pseudo-label accuracy 0.60 -> 0.30 (hidden labels) did not rise") in text


# The most successful runs of the toy benchmark (BENCHMARKS.md, soft_frequency + lse, first -> last quarter of 100
# steps): confident groups 18 -> 72 %, completion length 14.3 -> 7.1, pseudo-label accuracy 74 -> 85 %.
CONVERGING = history(
    self_consistency__high_confidence_share=[0.18, 0.18, 0.4, 0.5, 0.6, 0.7, 0.72, 0.72],
    completions__mean_length=[14.3, 14.3, 12.0, 10.0, 9.0, 8.0, 7.1, 7.1],
    entropy=[1.0, 1.0, 0.95, 0.95, 0.9, 0.9, 0.9, 0.9],  # -10 %: only the length falls by >= 25 %
    labels__pseudo_label_accuracy=[0.74, 0.74, 0.78, 0.8, 0.82, 0.84, 0.85, 0.85],
)


def test_confidence_rising_with_the_pseudo_label_accuracy_is_convergence():
    summary = summarize_log_history(CONVERGING)
    check = summary["collapse_check"]
    assert check["verdict"] == "converging"
    assert check["high_confidence_rise"] == pytest.approx(0.54)
    assert check["falls"] == {"completion length": pytest.approx(1 - 7.1 / 14.3)}
    text = " ".join(format_summary(summary).split())
    assert "WARNING" not in text
    assert ("Converging, not collapsing: groups with p_max >= 0.8 rose 0.18 -> 0.72; completion length fell 14.3 -> "
            "7.1 (-50%), and the pseudo-label accuracy 0.74 -> 0.85 (hidden labels) rose with them") in text
    # the same curves without the labels: the warning says it cannot tell
    unlabelled = [{k: v for k, v in e.items() if not k.startswith("labels/")} for e in CONVERGING]
    assert summarize_log_history(unlabelled)["collapse_check"]["verdict"] == "collapse or convergence"


def test_without_labels_the_held_out_maj_at_k_is_quoted():
    log = COLLAPSING + [{"step": s, "eval_loss": 0.0, "eval_labels/maj_at_g": m} for s, m in [(4, 0.5), (8, 0.25)]]
    message = summarize_log_history(log)["collapse_check"]["message"]
    assert "collapse or convergence" in message and "Held-out maj@k went 0.50 -> 0.25 over 2 evaluations." in message


def test_no_warning_without_a_fall_or_without_a_rise():
    confident_but_lively = history(
        self_consistency__high_confidence_share=[0.0, 0.0, 0.5, 1.0],
        entropy=[2.0, 2.0, 1.9, 1.8],  # -10%
        completions__mean_length=[100, 90, 95, 80],  # -20%
    )
    assert "collapse_check" not in summarize_log_history(confident_but_lively)
    shrinking_but_diverse = history(
        self_consistency__high_confidence_share=[0.1, 0.1, 0.2, 0.3],  # +0.2
        entropy=[2.0, 1.5, 1.0, 0.5],
    )
    assert "collapse_check" not in summarize_log_history(shrinking_but_diverse)


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


def test_the_key_lines_by_kind_of_question_when_the_run_logged_both():
    mixed = history(
        self_consistency__majority_ratio=[0.5, 0.6, 0.7, 0.8],
        self_consistency__majority_ratio__image=[0.4, 0.4, 0.6, 0.6],
        self_consistency__majority_ratio__text=[0.6, 0.8, 0.8, 1.0],
        labels__pseudo_label_accuracy=[0.5, 0.5, 0.5, 0.5],
        labels__pseudo_label_accuracy__image=[None, 1.0, 1.0, 0.0],  # None: no image group had a majority
        labels__pseudo_label_accuracy__text=[0.5, 0.0, 0.0, 1.0],
    )
    summary = summarize_log_history(mixed)
    assert summary["metrics"]["self_consistency/majority_ratio/text"]["last"] == 1.0
    lines = format_summary(summary).splitlines()
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith("majority ratio"))
    assert lines[start + 1] == f"    {'image questions':<44}    0.400 ->    0.600  rising"
    assert lines[start + 2] == f"    {'text questions':<44}    0.600 ->    1.000  rising"
    assert lines[start + 3].lstrip().startswith("pseudo-label accuracy")
    assert lines[start + 4] == f"    {'image questions':<44}    1.000 ->    0.000  falling"
    assert lines[start + 5] == f"    {'text questions':<44}    0.500 ->    1.000  rising"
    assert "questions" not in format_summary(summarize_log_history(COLLAPSING))  # one kind: no split


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
    assert '"collapse_check"' in (tmp_path / "run" / "summary.json").read_text()



@pytest.mark.parametrize("print_summary", [True, False])
def test_summary_callback_writes_and_prints_unless_told_not_to(tmp_path, capsys, print_summary):
    from types import SimpleNamespace

    from transformers import TrainerState

    from self_evolve_trl.training.summary import SummaryCallback

    state = TrainerState(log_history=COLLAPSING + [{"train_runtime": 12.3, "train_loss": 0.5, "step": 8}])
    args = SimpleNamespace(output_dir=str(tmp_path / "run"), print_summary=print_summary)
    callback = SummaryCallback()
    callback.on_train_end(args, state, control=None)
    assert (tmp_path / "run" / "summary.txt").read_text() == callback.text + "\n"
    assert callback.text.startswith("Run summary: 8 steps in 12s")
    assert capsys.readouterr().out == (callback.text + "\n" if print_summary else "")


JUDGE_KEYS = ["judge/score_mean", "judge/gate_mean", "judge/amplified_share", "judge/suppressed_share",
              "judge/missing_share", "judge/latency_s", "judge/samples", "judge/request_failures",
              "judge/request_failure_rate", "judge/parse_failures", "judge/parse_failure_rate",
              "judge/request_latency_s"]


def test_a_judge_run_with_labels_and_eval_fits_one_screen(tmp_path):
    """Every metric the trainer logs, every `judge/*` key the judge logs, held-out evaluations, the non-finite
    totals and the collapse check: at most 40 lines of at most 119 columns; the other judge keys go to the json."""
    from self_evolve_trl.training.diagnostics import LABEL_FREE_METRICS, LABEL_METRICS

    keys = [*LABEL_FREE_METRICS, *LABEL_METRICS, "entropy", "completions/mean_length", *JUDGE_KEYS]
    log = history(**{key.replace("/", "__"): [1.0 - 0.1 * i for i in range(8)] for key in keys})
    for entry, share in zip(log, [0.0, 0.0, 0.1, 0.2, 0.5, 0.8, 0.9, 1.0]):
        entry["self_consistency/high_confidence_share"] = share
        entry["rewards/nonfinite_count"] = 0.0
    log += [{"step": s, "eval_loss": 0.0, "eval_labels/rollout_accuracy": 0.3, "eval_labels/maj_at_g": 0.4,
             "eval_labels/pass_at_g": 0.6} for s in (4, 8)]
    log.append({"step": 8, "train_runtime": 30.0, "train_loss": 0.1})
    text = write_summary(str(tmp_path), log)
    lines = text.splitlines()
    assert len(lines) <= 40 and max(len(line) for line in lines) <= 119, text
    assert "pass@G (hidden labels)" in text and "collapse" in text and "non-finite rewards" in text
    for label in ("judge score (mean, parsed judgements)", "judge gate (mean)",
                  "judge answers without a parseable score", "judge requests failed"):
        assert label in text
    assert "judge/latency_s" not in text and "(and 8 more judge/* metrics in summary.json)" in text
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(JUDGE_KEYS) <= set(summary["metrics"]) and "labels/pass_at_g" in summary["metrics"]
