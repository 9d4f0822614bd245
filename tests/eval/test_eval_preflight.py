"""The pre-flight check (`--preflight`): the verdict at its boundaries, the estimates on hand-computed groups, and one
real run of the evaluation command on a tiny model."""

import json
import subprocess
import sys

import pytest

from self_evolve_trl.eval.benchmarks import BENCHMARKS, EvalError, EvalItem
from self_evolve_trl.eval.config import EvalConfig, check_config
from self_evolve_trl.eval.loading import LoadedBenchmark
from self_evolve_trl.eval.preflight import HELP, HURT, PREFLIGHT_RULE, UNCERTAIN, PreflightRule, preflight_verdict
from self_evolve_trl.eval.runner import Extractor, score_benchmark

# ----------------------------------------------------------------------------------------------------------------
# The verdict


@pytest.mark.parametrize(
    "pass_at_1, maj_at_k, label_accuracy, expected",
    [
        (0.545, 0.80, 0.80, HELP),  # the taught tiny base on its own task: label-free training helps there
        (0.60, 0.65, 0.60, HELP),  # both boundaries met exactly (accuracy 0.6, gap 0.05)
        (0.61, 0.65, 0.60, UNCERTAIN),  # a right majority, but no better than the greedy answer
        (0.40, 0.59, 0.59, UNCERTAIN),  # between 0.5 and 0.6
        (0.40, 0.50, 0.50, UNCERTAIN),  # 0.5 itself is not below 0.5
        (0.40, 0.49, 0.49, HURT),
        (0.225, 0.285, 0.30, HURT),  # the 4x4 failure: a gap, but a wrong majority
        # the rule does not weigh the gap when the majority is mostly wrong (on such a base a soft reward still gained:
        # BENCHMARKS.md, the 900-step 4x4 base)
        (0.10, 0.90, 0.45, HURT),
        (0.0, 0.0, None, UNCERTAIN),  # no readable answers: no majority at all
    ],
)
def test_verdict_at_its_boundaries(pass_at_1, maj_at_k, label_accuracy, expected):
    assert preflight_verdict(pass_at_1, maj_at_k, label_accuracy).verdict == expected


def test_the_rule_is_one_named_place_and_the_reason_quotes_it():
    assert (PREFLIGHT_RULE.help_label_accuracy, PREFLIGHT_RULE.min_gap, PREFLIGHT_RULE.hurt_label_accuracy) == (
        0.6, 0.05, 0.5)
    strict = PreflightRule(help_label_accuracy=0.9)
    assert preflight_verdict(0.5, 0.8, 0.8, strict).verdict == UNCERTAIN
    verdict = preflight_verdict(0.225, 0.285, 0.30)
    assert verdict.reason.startswith("the majority answer is right for only 0.30 of the questions (below 0.50)")
    assert "no sample gave an answer the rules could read" in preflight_verdict(0.0, 0.0, None).reason


def test_estimates_on_hand_computed_groups():
    """Four questions, k = 3. a: majority right; b: majority wrong, one sample right; c: no readable sample (no
    majority, left out of the pseudo-label accuracy); d: majority right, greedy wrong."""
    items = [EvalItem(id=i, question="q", reference="2", answer_type="free") for i in "abcd"]
    loaded = LoadedBenchmark(BENCHMARKS["geo3k"], items, dataset=None, image_column="images", source="test")
    box = lambda *answers: [f"\\boxed{{{a}}}" if a is not None else "no answer" for a in answers]
    greedy = {"a": box(2), "b": box(3), "c": box(None), "d": box(5)}
    sampled = {"a": box(2, 2, 3), "b": box(3, 3, 2), "c": box(None, None, None), "d": box(2, 4, 2)}
    result = score_benchmark(loaded, greedy, sampled, Extractor(None), preflight=True)
    report = result["preflight"]
    assert (report["n"], report["k"]) == (4, 3)
    assert report["pass_at_1"] == 0.25 and report["maj_at_k"] == 0.5 and report["gap"] == 0.25
    assert report["pass_at_k"] == 0.75 and report["sampled_pass_at_1"] == pytest.approx((2 + 1 + 0 + 2) / 12)
    assert report["label_accuracy"] == pytest.approx(2 / 3) and report["labelled_share"] == 0.75
    assert report["label_accuracy_se"] == pytest.approx(((2 / 3) * (1 / 3) / 3) ** 0.5)
    assert report["verdict"] == HELP and report["rule"] == {"help_label_accuracy": 0.6, "min_gap": 0.05,
                                                            "hurt_label_accuracy": 0.5}
    assert "preflight" not in score_benchmark(loaded, greedy, sampled, Extractor(None))


def test_readme_command_is_a_valid_preflight_run():
    """README "Will it work on my data?": its command parses into a pre-flight run with 8 samples."""
    from pathlib import Path

    from self_evolve_trl.eval.__main__ import build_parser, config_from_args

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = readme.split("## Will it work on my data?\n", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    argv = block.split("#", 1)[0].replace("\\\n", " ").split()
    assert argv[:3] == ["python", "-m", "self_evolve_trl.eval"]
    config = config_from_args(build_parser().parse_args(argv[3:]))
    assert (config.preflight, config.samples, config.benchmarks, config.data) == (
        True, 8, ["geo3k"], {"geo3k": "dev.parquet"})


def test_preflight_needs_samples():
    config = EvalConfig(model="m", benchmarks=["geo3k"], preflight=True)
    with pytest.raises(EvalError, match=r"--preflight needs --samples k .*e\.g\. --samples 8"):
        check_config(config)


# ----------------------------------------------------------------------------------------------------------------
# One real run


def test_eval_command_with_preflight_prints_the_verdict_and_writes_it(scoring_model_dir, tmp_path):
    """The tiny model made to answer `\\boxed{0.d}` with d uniform in 1..9, whatever the question: its greedy answer
    is one fixed value and its majority is a random digit, right for about one question in nine. References 0.1 ..
    0.9 (two rows each): the pre-flight must call label-free training likely to hurt."""
    import datasets
    from PIL import Image

    rows = [{"problem": "Which decimal?", "answer": f"0.{d}", "image": Image.new("RGB", (56, 56), "red")}
            for d in range(1, 10) for _ in range(2)]
    data = tmp_path / "dev.parquet"
    datasets.Dataset.from_list(rows).cast_column("image", datasets.Image()).to_parquet(data)
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "self_evolve_trl.eval", "--model", scoring_model_dir, "--benchmarks", "geo3k",
         "--data", f"geo3k={data}", "--samples", "4", "--preflight", "--max-new-tokens", "8", "--no-progress",
         "--output-dir", str(out)],
        check=False, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "results.json").read_text())["benchmarks"]["geo3k"]["preflight"]
    assert (report["n"], report["k"]) == (18, 4) and report["labelled_share"] == 1.0
    assert report["pass_at_1"] == pytest.approx(2 / 18)  # one fixed greedy answer: right for its two rows
    assert report["label_accuracy"] == report["maj_at_k"] < 0.5 and report["pass_at_k"] >= report["maj_at_k"]
    assert report["gap"] == pytest.approx(report["maj_at_k"] - report["pass_at_1"])
    assert report["verdict"] == HURT
    assert "## Pre-flight: will label-free training help?" in result.stdout
    assert f"- Geo3K: likely to hurt: the majority answer is right for only {report['label_accuracy']:.2f}" in (
        result.stdout)
    assert "Rule: likely to help when the pseudo-label accuracy is at least 0.6" in result.stdout
    assert "## Pre-flight" in (out / "results.md").read_text()
