"""Evaluation data: local copies (splits, hub download layouts) read as the real data; `--compare`."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from self_evolve_trl.eval.__main__ import main
from tests.eval.eval_fixtures import (
    error_line,
    fixture_image,
    fixtures,  # noqa: F401  (a fixture)
    write_rows,
)


# ----------------------------------------------------------------------------------------------------------------
# Local copies: splits, hub download layouts


def test_a_multi_split_benchmark_missing_splits_stops_unless_narrowed(fixtures, tmp_path, capsys, tiny_model_dir):
    """DynaMath's worst case is over its 10 variants: a copy with 2 of them is not scored as if it were complete."""
    from self_evolve_trl.eval.benchmarks import EvalError, get_benchmark
    from self_evolve_trl.eval.loading import load_benchmark

    partial = tmp_path / "dynamath"
    (partial / "data").mkdir(parents=True)
    for variant in (1, 2):
        name = f"sample{variant}-00000-of-{variant:05d}.parquet"
        shutil.copy(os.path.join(fixtures["dynamath"], "data", name), partial / "data" / name)
    dynamath = get_benchmark("dynamath")
    with pytest.raises(EvalError) as error:
        load_benchmark(dynamath, str(partial))
    assert str(error.value) == (
        f"DynaMath: folder {partial} has no file for split {', '.join(f'sample_variant{i}' for i in range(3, 11))} "
        "(found sample_variant1, sample_variant2); to score only the splits there, say so: "
        "--split dynamath=sample_variant1,sample_variant2 (the metric is then over those splits only).")
    loaded = load_benchmark(dynamath, str(partial), split="sample_variant1,sample_variant2")
    assert loaded.splits == ("sample_variant1", "sample_variant2")
    assert [item.id for item in loaded.items] == [f"{seed}/sample_variant{v}" for v in (1, 2) for seed in "12345"]
    with pytest.raises(EvalError, match="has no file for split sample_variant3 \\(found sample_variant1\\)\\.$"):
        load_benchmark(dynamath, str(partial), split="sample_variant1,sample_variant3")
    # the command line says it in one line, and records the splits read
    err = error_line(["--model", tiny_model_dir, "--benchmarks", "dynamath", "--data", f"dynamath={partial}",
                  "--output-dir", str(tmp_path / "o")], capsys)
    assert err.startswith("error: DynaMath: folder") and "--split dynamath=sample_variant1,sample_variant2" in err


def test_the_fixtures_read_as_the_real_data(fixtures):
    """The fixtures hold the real data's odd rows; each is read as the benchmark means it."""
    from self_evolve_trl.eval.benchmarks import get_benchmark
    from self_evolve_trl.eval.loading import load_benchmark
    from self_evolve_trl.eval.scoring import score_answer, wemath_metrics

    dynamath = load_benchmark(get_benchmark("dynamath"), fixtures["dynamath"])  # the hub's sample{N} file names
    assert dynamath.splits == tuple(f"sample_variant{i}" for i in range(1, 11))
    first = dynamath.items[:5]
    assert [item.id for item in first] == [f"{seed}/sample_variant1" for seed in "12345"]
    assert [item.answer_type for item in first] == ["choice", "float", "float", "choice", "float"]
    assert first[3].options == {"A": "Group 1", "B": "Group 2", "C": "Group 3"}
    assert score_answer("Group 1", first[3].reference, "choice", first[3].options)
    assert score_answer("1.0", first[2].reference, "float")  # int: 1.000000000000001
    logicvista = load_benchmark(get_benchmark("logicvista"), fixtures["logicvista"])
    assert [(item.id, item.answer_type) for item in logicvista.items] == [
        ("lv1", "choices"), ("lv2", "choices"), ("lv3", "choices"), ("lv4", "free")]
    assert logicvista.left_out == ["lv5"]
    mathverse = load_benchmark(get_benchmark("mathverse"), fixtures["mathverse"], settings={})
    assert [(item.id, item.answer_type) for item in mathverse.items] == [
        ("2", "choice"), ("3", "free"), ("4", "choice"), ("5", "choice"), ("6", "choices")]
    assert [score_answer("A", item.reference, item.answer_type, item.options) for item in mathverse.items] == [
        True, False, True, True, False]
    wemath = load_benchmark(get_benchmark("wemath"), fixtures["wemath"])
    assert [item.id for item in wemath.items[:3]] == ["2steps_17/2steps_1", "2steps_17/2steps_2",
                                                      "2steps_17/2steps_multi"]
    metrics = wemath_metrics([i.group for i in wemath.items], [i.part for i in wemath.items], [True] * 7)
    assert (metrics["composite_problems"], metrics["CM_strict"], metrics["score_strict"]) == (2, 2, 100.0)


def test_hub_download_folders_are_read_as_the_hub_splits_them(tmp_path):
    """A MathVerse snapshot: testmini.parquet beside testmini_text_only.parquet (another split) and json copies of
    both; a shard named the hub's way with its hash suffix."""
    import datasets

    from self_evolve_trl.eval.benchmarks import get_benchmark
    from self_evolve_trl.eval.loading import load_benchmark

    root = tmp_path / "MathVerse"
    rows = {"sample_index": ["1", "2"], "problem_index": ["1", "1"], "problem_version": ["Vision Only", "Text Lite"],
            "question": ["", "q"], "image": [fixture_image(1), fixture_image(2)], "answer": ["A", "5"],
            "question_type": ["multi-choice", "free-form"], "query_wo": ["q"] * 2, "query_cot": ["q"] * 2,
            "question_for_eval": ["q"] * 2}
    write_rows(rows, str(root / "testmini.parquet"), {"image": "image"})
    text_only = {"sample_index": ["t1"], "problem_index": ["1"], "problem_version": ["Text Only"], "question": ["q"],
                 "answer": ["A"], "question_type": ["multi-choice"], "query_wo": ["q"], "query_cot": ["q"],
                 "question_for_eval": ["q"]}
    datasets.Dataset.from_dict(text_only).to_parquet(str(root / "testmini_text_only.parquet"))
    for name in ("testmini", "testmini_text_only"):
        (root / f"{name}.json").write_text(json.dumps([{"sample_index": "j", "problem_version": "Vision Only"}]))
    loaded = load_benchmark(get_benchmark("mathverse"), str(root), settings={"mathverse_version": "all"})
    assert [item.id for item in loaded.items] == ["1", "2"] and loaded.splits == ("testmini",)

    geo = tmp_path / "geometry3k"
    for split, answers in (("test", ["1", "2"]), ("train", ["9"])):
        rows = {"images": [[fixture_image(i)] for i in range(len(answers))], "problem": ["<image>x?"] * len(answers),
                "answer": answers}
        write_rows(rows, str(geo / "data" / f"{split}-00000-of-00001-5f3c2b1e0a9d.parquet"), {"images": "images"})
    loaded = load_benchmark(get_benchmark("geo3k"), str(geo))
    assert [item.reference for item in loaded.items] == ["1", "2"] and loaded.splits == ("test",)


def test_unknown_mathverse_version_lists_the_versions_found(fixtures):
    from self_evolve_trl.eval.benchmarks import EvalError, get_benchmark
    from self_evolve_trl.eval.loading import load_benchmark

    with pytest.raises(EvalError) as error:
        load_benchmark(get_benchmark("mathverse"), fixtures["mathverse"], settings={"mathverse_version": "Vison Only"})
    assert str(error.value) == (
        f"MathVerse: no items with problem_version 'Vison Only' in {fixtures['mathverse']}; the data has: "
        "Text Dominant, Vision Only (--mathverse-version one of them, or all).")


# ----------------------------------------------------------------------------------------------------------------
# --compare


def test_compare_prints_differences_and_protocol_changes(tmp_path, capsys):
    def result(value, instruction):
        return {
            "run": {"model": "m", "instruction": instruction, "backend": "transformers"},
            "benchmarks": {
                "mathvision": {"title": "MathVision", "metric": "accuracy", "n": 10, "source": "s",
                               "modes": {"greedy": {"accuracy": value}}},
                "wemath": {"title": "WeMath", "metric": "score_strict", "n": 7, "source": "s",
                           "modes": {"greedy": {"score_strict": value / 2}}},
            },
        }

    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(result(20.0, "box it")))
    b.write_text(json.dumps(result(25.5, "box it")))
    assert main(["--compare", str(a), str(b)]) == 0
    text = capsys.readouterr().out
    assert "| MathVision | accuracy | greedy | 20.0 | 25.5 | +5.5 |" in text
    assert "| WeMath | score_strict | greedy | 10.0 | 12.8 | +2.8 |" in text
    assert "| Average | | greedy | | | +4.1 |" in text and "Same protocol." in text
    b.write_text(json.dumps(result(25.5, "answer only")))
    assert main(["--compare", str(a), str(b)]) == 0
    assert "instruction: A = 'box it', B = 'answer only'" in capsys.readouterr().out


