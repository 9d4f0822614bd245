"""`benchmarks/self_evolution_toy.py` (the package `benchmarks/toy/`) at a miniature size, so the benchmark cannot rot
silently: the whole pipeline (supervised base with its verification phase, label-free runs through
`SelfEvolveGRPOTrainer` with the judge and the chance judge, held-out evaluation, tables, figures) and the pieces the
comparison rests on (disjoint splits, loss masking, the judge prompt and the two-turn chat the base is taught, the
paired-difference intervals, the summary of several runs)."""

import importlib
import json
import math
import random
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "benchmarks" / "self_evolution_toy.py"
MODULES = ("data", "evaluation", "base", "methods", "judges", "runs", "stats", "report", "figures", "summarise", "cli")


@pytest.fixture(scope="module")
def toy():
    """The package's modules, and their public names merged in one namespace (`toy.main`, `toy.evaluate`, ...)."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    modules = {name: importlib.import_module(f"benchmarks.toy.{name}") for name in MODULES}
    names = {k: v for m in modules.values() for k, v in vars(m).items() if not k.startswith("_")}
    return SimpleNamespace(modules=modules, **names)


METHODS = ["majority_vote+grpo", "judge_modulated+lse", "judge_modulated+lse (chance judge)"]
MINI = ["--sft-examples", "48", "--sft-steps", "3", "--sft-eval-every", "3", "--val-size", "4", "--rl-prompts", "8",
        "--rl-steps", "2", "--prompts-per-step", "2", "--num-generations", "4", "--eval-size", "6",
        "--eval-samples", "4", "--max-completion-length", "12", "--methods", ",".join(METHODS),
        "--judge-target", "1.01", "--verify-steps", "2", "--verify-eval-every", "1", "--two-turn-share", "0.5",
        "--seeds", "0", "--workers", "1", "--reach-level", "0", "--reach-window", "1", "--reach-run", "1"]


def test_pipeline_at_miniature_size(toy, tmp_path, capsys):
    out = tmp_path / "toy"
    report = toy.main(MINI + ["--output-dir", str(out), "--figures-dir", str(tmp_path / "figures"),
                              "--figures-prefix", "toy_mini"])
    printed = capsys.readouterr().out.strip().splitlines()

    # the table: printed last, written to table.md, one row for the base and one per method
    table = (out / "table.md").read_text().strip().splitlines()
    assert printed[-len(table):] == table
    assert table[0].startswith("| method | seeds | greedy pass@1 | sampled pass@1 | maj@4 | pass@4 |")
    assert "| step its 1-step mean stays ≥ 0.0 for 1 steps (per seed) |" in table[0]
    assert all(line.count("|") == 13 for line in table)
    assert [line.split("|")[1].strip() for line in table[2:]] == ["base (supervised)", *METHODS]
    assert [row["method"] for row in report["table"]] == ["base (supervised)", *METHODS]
    assert [row["seeds"] for row in report["table"][1:]] == [1, 1, 1]
    # at level 0 a 1-step mean is reached at the first logged step, and the table says so per seed
    assert [row["confident_steps"] for row in report["table"][1:]] == [[1], [1], [1]]
    assert [line.split("|")[10].strip() for line in table[3:]] == ["1", "1", "1"]

    # the paired differences, printed before the table: with one seed, a difference and no interval
    diffs = (out / "differences.md").read_text().strip().splitlines()
    assert printed[-len(table) - len(diffs):-len(table)] == diffs
    greedy = {run["method"]: run["heldout"]["greedy_pass1"] for run in report["runs"]}
    pairs = [(d["a"], d["b"]) for d in report["differences"]]
    assert ("judge_modulated+lse", "judge_modulated+lse (chance judge)") in pairs
    chance = report["differences"][pairs.index(("judge_modulated+lse", "judge_modulated+lse (chance judge)"))]
    assert chance["greedy_pass1"]["seeds"] == [0]
    assert chance["greedy_pass1"]["mean"] == pytest.approx(greedy[METHODS[1]] - greedy[METHODS[2]])
    assert math.isnan(chance["greedy_pass1"]["low"])
    assert diffs[0] == ("| method A − method B | isolates | seeds | greedy pass@1, mean diff [95% CI] "
                        "| maj@4, mean diff [95% CI] |")

    # the base: its verification phase ran its 2 steps (judge accuracy checked before, after 1 and after 2)
    verification = report["sft"]["verification"]
    assert verification["steps"] == 2 and [h["step"] for h in verification["history"]] == [0, 1, 2]
    assert 0.0 <= report["base_judge_accuracy"] <= 1.0
    assert any(line.startswith("  base after 3 steps") and "verification phase 2 steps" in line for line in printed)

    # each run: two logged training steps with the curves the report reads; the judge runs have the judge's metrics
    judged = ["judge/gate_mean", "rewards/judge_modulated/mean"]
    for method, folder, extra in zip(METHODS, ["majority_vote+grpo", "judge_modulated+lse",
                                               "judge_modulated+lse_chance_judge"], [[], judged, judged]):
        history = json.loads((out / "runs" / f"{folder}-seed0" / "log_history.json").read_text())
        steps = [entry for entry in history if "reward" in entry]
        assert [entry["step"] for entry in steps] == [1, 2]
        for key in list(toy.CURVES.values()) + extra:
            assert all(key in entry for entry in steps), (method, key)

    # held-out metrics are shares of the held-out set; the example outputs are kept
    assert [run["method"] for run in report["runs"]] == METHODS
    for run in report["runs"]:
        for key in ("greedy_pass1", "sampled_pass1", "maj_at_k", "pass_at_k"):
            assert 0.0 <= run["heldout"][key] <= 1.0
            assert 0.0 <= report["base"][key] <= 1.0
        assert run["heldout"]["pass_at_k"] >= run["heldout"]["maj_at_k"]
        assert len(run["heldout"]["examples"]) == 4

    # the goal is judged on the method with the higher held-out greedy pass@1, against the base
    saved = json.loads((out / "results.json").read_text())
    best = max(METHODS, key=lambda m: (greedy[m], -METHODS.index(m)))
    assert saved["sft"]["steps"] == 3 and saved["goal"]["best_method"] == best
    assert saved["goal"]["greedy_gain_points"] == pytest.approx(100 * (greedy[best] - report["base"]["greedy_pass1"]))

    names = {"toy_mini_curves.png", "toy_mini_heldout.png"}
    assert {Path(p).name for p in report["figures"]} == names
    for path in report["figures"]:
        assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {p.name for p in (tmp_path / "figures").iterdir()} == names
    assert (out / "base" / "config.json").exists()

    # the same folder read back by --summarise: one row per method, its gain over the base
    summary = toy.main(["--summarise", str(out), "--output-dir", str(tmp_path / "summary")])
    assert [r["method"] for r in summary["rows"]] == METHODS
    assert summary["rows"][0]["gain"]["mean"] == pytest.approx(greedy[METHODS[0]] - report["base"]["greedy_pass1"])
    assert (tmp_path / "summary" / "self_evolution_toy_boundary.png").exists()


def test_the_command_runs_as_a_script():
    done = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, check=True)
    assert "--summarise RUN_DIR" in done.stdout and "--judge-target" in done.stdout
    assert done.stdout.splitlines()[0].startswith("usage: self_evolution_toy.py")


def test_summarise_pools_pairs_over_runs_on_one_base_and_over_data_seeds(toy, tmp_path):
    base = {"greedy_pass1": 0.3, "maj_at_k": 0.7, "pass_at_k": 0.9}
    first = _results_dir(tmp_path / "a", "count_color", 3, base, {"soft_frequency+lse": [0.8, 0.7, 0.9]})
    later = _results_dir(tmp_path / "b", "count_color", 3, base, {"judge_modulated+lse": [0.9, 0.7, 1.0]})
    other = tmp_path / "c"
    _results_dir(other, "count_color", 3, dict(base, greedy_pass1=0.4),
                 {"soft_frequency+lse": [0.6, 0.6], "judge_modulated+lse": [0.8, 0.6]})
    report = json.loads((other / "results.json").read_text())
    report["args"]["data_seed"] = 1
    (other / "results.json").write_text(json.dumps(report))
    rows = toy.pooled_differences(toy.load_runs([first, later, str(other)]))
    assert [(r["a"], r["b"], r["pairs"], r["bases"]) for r in rows] == [
        ("judge_modulated+lse", "soft_frequency+lse", 5, 2)]
    # differences .1, 0, .1 (first base) and .2, 0 (data seed 1): mean .08
    assert rows[0]["greedy_pass1"]["mean"] == pytest.approx(0.08)
    assert toy.format_pooled(rows).splitlines()[2].startswith(
        "| judge_modulated+lse − soft_frequency+lse | the judge, on the same prior and advantage | 2 | 5 | +8.0 [")


# ----------------------------------------------------------------------------------------------------------------
# The report's pieces, on hand-made inputs


def test_sustained_step_needs_a_run_of_window_means(toy):
    # one early spike (2 of 4 groups confident at step 1, the same base for every method) never counts
    assert toy.sustained_step(list(range(1, 11)), [0.5] + [0.0] * 9) is None
    # trailing 5-step means 0, .2, .4, .6, .8, 1, ... from step 5: >= 0.5 from step 8 on, 5 steps long at step 12
    assert toy.sustained_step(list(range(1, 16)), [0.0] * 5 + [1.0] * 10) == 8
    # means 1, 1, 1, .8, .6 at steps 5-9: five steps at or above 0.5 from step 5, the first step a mean exists
    assert toy.sustained_step(list(range(1, 16)), [1.0] * 7 + [0.0] * 8) == 5
    # means >= 0.5 at steps 5-8 only (4 steps, the run breaks at 9 with 0.4), then again from step 14 (0.6) on
    assert toy.sustained_step(list(range(1, 22)), [1.0] * 6 + [0.0] * 5 + [1.0] * 10) == 14
    # the logged step numbers are reported, not positions
    assert toy.sustained_step([2, 4, 6, 8], [0.0, 1.0, 1.0, 1.0], window=2, run=2) == 4
    assert toy.sustained_step([1, 2, 3, 4], [1.0] * 4) is None  # fewer steps than the window
    assert toy.sustained_step([1, 2, 3], [0.6, 0.7, 0.4], level=0.5, window=1, run=2) == 1


def test_early_mean_and_reached_summary(toy):
    assert toy.early_mean([0.0, 0.5, 1.0, 1.0]) == 0.25
    assert toy.early_mean([0.0, 1.0, 1.0]) == 0.0  # first half rounded down
    assert toy.early_mean([0.8]) == 0.8
    assert math.isnan(toy.early_mean([]))
    assert toy.reached_summary([10, 20, 30]) == "3 of 3 seeds, mean step 20 ± 10"
    assert toy.reached_summary([10, 40, None]) == "2 of 3 seeds, mean step 25 ± 21; 1 never"
    assert toy.reached_summary([None]) == "0 of 1 seeds; 1 never"


def test_mean_sd_never_drops_a_missing_value(toy):
    nan = float("nan")
    assert all(math.isnan(x) for x in toy.mean_sd([nan, 10.0, 40.0]))
    assert all(math.isnan(x) for x in toy.mean_sd([]))
    mean, sd = toy.mean_sd([10.0, 40.0])
    assert mean == 25.0 and sd == pytest.approx(21.2132, abs=1e-4)
    assert toy.mean_sd([7.0]) == (7.0, 0.0)


def _history(**curves):
    """A log history of len(values) steps with the given curves (names as in CURVES), plus TRL's final summary."""
    length = max(len(v) for v in curves.values())
    entries = [{"step": i + 1, **{toy_key: v[i] for toy_key, v in curves.items()}} for i in range(length)]
    return entries + [{"step": length, "train_runtime": 1.0, "train_loss": 0.0}]


HC, PL, AE = ("self_consistency/high_confidence_share", "labels/pseudo_label_accuracy",
              "self_consistency/answer_entropy")
BASE = {"greedy_pass1": 0.325, "sampled_pass1": 0.504, "maj_at_k": 0.70, "pass_at_k": 0.94, "examples": []}


def _heldout(greedy, sampled, maj, passk):
    return {"greedy_pass1": greedy, "sampled_pass1": sampled, "maj_at_k": maj, "pass_at_k": passk,
            "sampled_length": 7.0, "greedy_length": 5.0, "route_direct": 1.0, "route_rows": 0.0, "route_cols": 0.0}


def _two_seed_results():
    seed0 = _history(**{HC: [0.5, 0.0, 0.0, 0.25, 0.75, 0.75, 1.0, 1.0], AE: [1.0] * 4 + [0.5] * 4, PL: [0.5] * 8})
    seed1 = _history(**{HC: [0.25] * 6 + [0.5, 0.5], AE: [0.8] * 8})  # no pseudo-label accuracy logged
    return [
        {"method": "m", "seed": 0, "heldout": _heldout(0.5, 0.4, 0.7, 0.9), "train_s": 10.0, "history": seed0},
        {"method": "m", "seed": 1, "heldout": _heldout(0.7, 0.6, 0.7, 0.8), "train_s": 20.0, "history": seed1},
    ]


def test_aggregate_over_seeds(toy):
    base_row, row = toy.aggregate(BASE, _two_seed_results(), level=0.5, window=2, run=2)
    assert base_row["method"] == "base (supervised)" and base_row["greedy_pass1"] == (0.325, 0.0)
    assert "examples" not in base_row
    assert row["method"] == "m" and row["seeds"] == 2 and row["seed_ids"] == [0, 1]
    assert row["greedy_pass1"] == pytest.approx((0.6, 0.2 / 2 ** 0.5))
    assert row["maj_at_k"] == (0.7, 0.0)
    # quarter means (2 of 8 steps): seed 0 .25 -> 1.0, seed 1 .25 -> .5
    assert row["high_confidence_first"] == (0.25, 0.0)
    assert row["high_confidence_last"] == pytest.approx((0.75, 0.5 / 2 ** 0.5))
    assert row["answer_entropy_first"] == pytest.approx((0.9, 0.2 / 2 ** 0.5))
    # logged by one seed only: missing, not the other seed's value
    assert all(math.isnan(x) for x in row["pseudo_label_accuracy_first"])
    # first half: seed 0 (.5 + 0 + 0 + .25) / 4 = .1875, seed 1 .25
    assert row["high_confidence_early"] == pytest.approx((0.21875, 0.0625 / 2 ** 0.5))
    # 2-step means: seed 0 .25, 0, .125, .5, .75, .875, 1 at steps 2-8 -> from step 5; seed 1 reaches .5 only at 8
    assert row["confident_steps"] == [5, None]
    assert row["train_s"] == pytest.approx((15.0, 10 / 2 ** 0.5))


def test_format_table(toy):
    rows = toy.aggregate(BASE, _two_seed_results(), level=0.5, window=2, run=2)
    assert toy.format_table(rows, 8, level=0.5, window=2, run=2).splitlines() == [
        ("| method | seeds | greedy pass@1 | sampled pass@1 | maj@8 | pass@8 | pseudo-label acc. (train) "
         "| high-conf. share (train) | high-conf. share, mean of the first half "
         "| step its 2-step mean stays ≥ 0.5 for 2 steps (per seed) | answer entropy (train) "
         "| completion length (train) |"),
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        "| base (supervised) | 1 | 32.5 | 50.4 | 70.0 | 94.0 | – | – | – | – | – | – |",
        ("| m | 2 | 60.0 ± 14.1 | 50.0 ± 14.1 | 70.0 | 85.0 ± 7.1 | – | 25 → 75 | 21.9 ± 4.4 | 5 / never "
         "| 0.90 → 0.65 | – |"),
    ]


def _goal_rows(base_greedy, base_maj, *methods):
    rows = [{"method": "base (supervised)", "greedy_pass1": (base_greedy, 0.0), "maj_at_k": (base_maj, 0.0)}]
    for name, greedy, first, last, early, steps in methods:
        rows.append({"method": name, "greedy_pass1": (greedy, 0.05), "high_confidence_first": (first, 0.0),
                     "high_confidence_last": (last, 0.0), "high_confidence_early": (early, 0.0),
                     "confident_steps": steps})
    return rows


def test_goal_check_met_and_missed(toy):
    a = ("A", 0.46, 0.2, 0.7, 0.30, [10, 40, None])
    b = ("B", 0.84, 0.2, 0.8, 0.25, [None, None, 30])
    goal = toy.goal_check(_goal_rows(0.325, 0.70, a, b))
    assert goal["best_method"] == "B" and goal["goal_met"]
    assert goal["greedy_gain_points"] == pytest.approx(51.5)  # 84 - 32.5
    assert goal["base_gap_points"] == pytest.approx(37.5)  # 70 - 32.5
    assert goal["gap_closed"] == pytest.approx(51.5 / 37.5)
    assert goal["fastest_high_confidence_rise"] == "B"  # .6 against .5
    assert goal["highest_early_high_confidence"] == "A"  # .30 against .25
    # median step over seeds, never counted as last: A 40, B never
    assert goal["earliest_high_confidence"] == "A"
    assert goal["high_confidence_reached_at"] == {"A": [10, 40, None], "B": [None, None, 30]}

    # +8 points: missed, though it closes 8 / 37.5 of the gap
    missed = toy.goal_check(_goal_rows(0.325, 0.70, ("A", 0.405, 0.2, 0.7, 0.3, [None]), ("B", 0.3, 0, 0, 0, [9])))
    assert not missed["goal_met"] and missed["best_method"] == "A"
    assert missed["greedy_gain_points"] == pytest.approx(8.0)
    assert missed["earliest_high_confidence"] == "B"
    # B never reaches the level in 2 of its 3 seeds: its median is "never", so no method is the earliest
    assert toy.goal_check(_goal_rows(0.325, 0.70, b))["earliest_high_confidence"] is None
    # +25 points but only 25 of a 60-point gap closed: missed
    missed = toy.goal_check(_goal_rows(0.20, 0.80, ("A", 0.45, 0.2, 0.7, 0.3, [5])))
    assert not missed["goal_met"] and missed["gap_closed"] == pytest.approx(25 / 60)
    # exactly +10 points and half of a 20-point gap: met
    assert toy.goal_check(_goal_rows(0.30, 0.50, ("A", 0.40, 0.2, 0.7, 0.3, [5])))["goal_met"]


class ScriptedModel:
    """Stands in for `generate` only: returns prepared completions after the prompts, right-padded like generate's
    output; decoding, answer extraction, voting and scoring are `evaluate`'s own."""

    def __init__(self, tokenizer, greedy, sampled):
        self.tokenizer, self.greedy, self.sampled, self.training = tokenizer, greedy, sampled, True

    def eval(self):
        self.training = False

    def train(self, mode=True):
        self.training = mode

    def generate(self, input_ids, do_sample, pad_token_id, num_return_sequences=1, **kwargs):
        import torch

        texts = self.sampled if do_sample else self.greedy
        assert len(texts) == input_ids.shape[0] * num_return_sequences and not self.training
        ids = [self.tokenizer(t + "<|im_end|>", add_special_tokens=False)["input_ids"] for t in texts]
        width = max(map(len, ids))
        completions = torch.tensor([i + [pad_token_id] * (width - len(i)) for i in ids])
        return torch.cat([input_ids.repeat_interleave(num_return_sequences, 0), completions], 1)


def test_evaluate_scores_known_generations(toy, tiny_processor):
    from self_evolve_trl.data.synthetic import Board

    question = "How many red squares are there in the image?"
    boards = [Board({(0, 0): "red", (2, 2): "red"}, "red", question, 2), Board({(1, 1): "blue"}, "red", question, 0),
              Board({(0, 0): "red", (0, 1): "red", (1, 1): "red"}, "red", question, 3)]
    greedy = ["<think>cols 1+0+1=2</think>\\boxed{2}", "\\boxed{1}", "I think four"]  # right, wrong, no answer
    sampled = [
        # 2: three right ("2.0" is 2 once normalised), majority 2 (p_max 3/4)
        "\\boxed{2}", "\\boxed{2.0}", "\\boxed{3}", "<think>rows 1+1+0=2</think>\\boxed{2}",
        # 0: one right, majority 1 (p_max 2/4), one abstention
        "\\boxed{1}", "\\boxed{1}", "\\boxed{0}", "no idea",
        # 3: none right, majority 4 (p_max 3/4)
        "\\boxed{4}", "<think>cols 1+2+1=4</think>\\boxed{4}", "\\boxed{1}", "\\boxed{4}",
    ]
    model = ScriptedModel(tiny_processor.tokenizer, greedy, sampled)
    result = toy.evaluate(model, tiny_processor, boards, 3, k=4, max_new_tokens=12, temperature=1.0)

    assert model.training  # put back
    expected = {"greedy_pass1": 1 / 3, "sampled_pass1": (3 / 4 + 1 / 4 + 0) / 3, "maj_at_k": 1 / 3, "pass_at_k": 2 / 3,
                "abstention": 1 / 12, "p_max": (3 / 4 + 2 / 4 + 3 / 4) / 3,
                "route_direct": 9 / 12, "route_rows": 1 / 12, "route_cols": 1 / 12, "route_other": 1 / 12}
    for key, value in expected.items():
        assert result[key] == pytest.approx(value), key
    # lengths count the completion's tokens and its end-of-turn token, not the padding
    tokens = [len(tiny_processor.tokenizer(t + "<|im_end|>", add_special_tokens=False)["input_ids"]) for t in greedy]
    assert result["greedy_length"] == pytest.approx(sum(tokens) / 3)
    assert len(set(tokens)) == 3  # so padding is exercised
    assert [e["answer"] for e in result["examples"]] == [2, 0, 3]
    assert result["examples"][1] == {"answer": 0, "question": question, "greedy": "\\boxed{1}",
                                     "samples": sampled[4:8]}

    only = toy.evaluate(ScriptedModel(tiny_processor.tokenizer, greedy, []), tiny_processor, boards, 3, k=4,
                        max_new_tokens=12, temperature=1.0, greedy_only=True)
    assert set(only) == {"greedy_pass1", "greedy_length"} and only["greedy_pass1"] == pytest.approx(1 / 3)


def test_docstring_examples(toy):
    """The package's doctests (CI collects doctests from the library only, not from benchmarks/)."""
    import doctest

    attempted = 0
    for module in toy.modules.values():
        result = doctest.testmod(module)
        assert result.failed == 0, module.__name__
        attempted += result.attempted
    assert attempted >= 10


def test_the_costliest_runs_start_first(toy, tmp_path):
    """Two workers finish sooner when no long run is left for last: CSRS first, then TTRL's vote and the judges,
    the plain rewards last; seeds keep their order within a method."""
    catalog = toy.methods(None, str(tmp_path / "template.txt"))
    jobs = [{"method": catalog[m], "seed": s} for m in toy.DEFAULT_METHODS for s in (0, 1)]
    order = [(job["method"].name, job["seed"]) for job in toy.slowest_first(jobs)]
    assert order[:4] == [("csrs", 0), ("csrs", 1), ("csrs_continuation", 0), ("csrs_continuation", 1)]
    assert order[4][0] == "ttrl_vote+grpo" and {m for m, _ in order[6:10]} == {
        "judge_modulated+lse", "judge_modulated+lse (chance judge)"}
    assert order[-2:] == [("soft_frequency+grpo", 0), ("soft_frequency+grpo", 1)]


def test_held_out_boards_never_occur_in_training(toy):
    args = toy.parse_args(["--sft-examples", "400", "--val-size", "50", "--rl-prompts", "200", "--eval-size", "100",
                           "--grid", "2"])  # a 2x2 grid has few boards: many draws repeat
    splits = toy.draw_splits(args)
    seen = {b.key() for b in splits.sft + splits.val + splits.rl}
    assert len(splits.test) == 100
    assert not seen & {b.key() for b in splits.test}
    assert len({b.key() for b in splits.test}) == 100


def test_supervised_loss_is_on_the_target_only(toy, tiny_processor):
    from self_evolve_trl.data.synthetic import Board, draw_board

    cells = {(0, 0): "red", (1, 2): "red", (2, 2): "blue"}
    board = Board(cells, "red", "How many red squares are there in the image?", 2)
    target = toy.worked_solution(board, 3, "cols")
    example = toy.encode_example(tiny_processor, toy.prompt_messages(board, 3, draw_board(board.cells, 3)), target)
    labels = example["labels"][0]
    kept = labels[labels != -100]
    assert tiny_processor.tokenizer.decode(kept) == "<think>cols 1+0+1=2</think>\\boxed{2}<|im_end|>"
    assert (example["input_ids"][0][labels != -100] == kept).all()
    assert example["input_ids"].shape == example["mm_token_type_ids"].shape


def test_judge_examples_are_the_prompts_the_reference_judge_sends(toy, tiny_processor, tmp_path):
    """The base learns to judge on exactly the chat that the `reference` backend builds from the template and the
    trainer's prompt, so the frozen base can act as the judge."""
    from self_evolve_trl.data.messages import prompt_images, prompt_text
    from self_evolve_trl.data.synthetic import Board, draw_board
    from self_evolve_trl.judge.backends.reference import ReferenceJudge

    path = tmp_path / "judge.txt"
    path.write_text(toy.JUDGE_TEMPLATE)
    template = toy.load_judge_template(str(path))
    board = Board({(0, 1): "green", (2, 0): "green"}, "green", "How many green squares are there in the image?", 2)
    image = draw_board(board.cells, 3)
    candidate = toy.worked_solution(board, 3, "rows")

    dataset_prompt = toy.prompt_messages(board, 3, image)  # what the trainer's prompts look like (image filled in)
    request = template.request(prompt_text(dataset_prompt), candidate, prompt_images(dataset_prompt))
    backend_chat = ReferenceJudge._conversation(SimpleNamespace(trainer=SimpleNamespace(_is_vlm=True)), request)
    ours = toy.judge_messages(board, candidate, image, template)
    assert toy.encode_prompt(tiny_processor, ours)["input_ids"].tolist() == \
        toy.encode_prompt(tiny_processor, backend_chat)["input_ids"].tolist()

    assert toy.judge_solution(board, 3, candidate) == "<think>rows 1+0+1=2; candidate 2</think>\\boxed{1}"
    wrong = toy.wrong_solution(board, 3, "rows", random.Random(0))
    assert toy.extract_answer(wrong) != "2"
    assert toy.judge_solution(board, 3, wrong).endswith("\\boxed{0}")


def test_bad_arguments_name_the_choices(toy, capsys):
    with pytest.raises(SystemExit):
        toy.parse_args(["--methods", "majority_vote+grpo,nope"])
    error = capsys.readouterr().err
    assert "unknown method 'nope'; valid methods: majority_vote+grpo, soft_frequency+centered" in error
    with pytest.raises(SystemExit):
        toy.parse_args(["--routes", "rows,diagonal"])
    assert "unknown route 'diagonal'; valid routes: rows, cols, direct" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        toy.parse_args(["--reach-window", "0"])
    assert "--reach-window must be a positive number of steps, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        toy.parse_args(["--smooth", "1"])
    assert "--smooth must be in [0, 1), got 1.0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        toy.parse_args(["--verify-mix", "1.5"])
    assert "--verify-mix must be in [0, 1], got 1.5" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------------------------
# Paired differences, by hand


def test_paired_difference_t_interval_by_hand(toy):
    # differences 0.2, 0.0, 0.4 (seed 3 has no partner): mean 0.2, sd 0.2, t(2) = 4.303, half-width 4.303·0.2/√3
    d = toy.paired_difference({0: 0.8, 1: 0.7, 2: 0.9}, {0: 0.6, 1: 0.7, 2: 0.5, 3: 0.1})
    assert d["seeds"] == [0, 1, 2]
    assert d["mean"] == pytest.approx(0.2) and d["sd"] == pytest.approx(0.2)
    assert (d["low"], d["high"]) == pytest.approx((0.2 - 0.496867, 0.2 + 0.496867), abs=1e-6)
    # five seeds, differences 1, 2, 3, 4, 5: mean 3, sd √2.5, t(4) = 2.776
    d = toy.paired_difference({s: s + 1.0 for s in range(5)}, {s: 0.0 for s in range(5)})
    half = 2.776 * 2.5 ** 0.5 / 5 ** 0.5
    assert (d["low"], d["high"]) == pytest.approx((3 - half, 3 + half))
    # equal differences: a zero-width interval; one seed: the difference, no interval
    assert toy.paired_difference({0: 0.5, 1: 0.6}, {0: 0.4, 1: 0.5})["low"] == pytest.approx(0.1)
    one = toy.paired_difference({0: 0.5}, {0: 0.25})
    assert one["mean"] == 0.25 and math.isnan(one["low"]) and math.isnan(one["high"])
    assert toy.t_975(1) == 12.706 and toy.t_975(30) == 2.042
    assert toy.t_975(31) == pytest.approx(2.0395, abs=1e-3) and toy.t_975(120) == pytest.approx(1.9799, abs=1e-3)
    with pytest.raises(ValueError, match="at least 1 degree of freedom, got 0"):
        toy.t_975(0)


def _runs(greedy: dict[str, list[float]], maj: float = 0.5) -> list[dict]:
    return [{"method": m, "seed": s, "heldout": {"greedy_pass1": g, "maj_at_k": maj}}
            for m, values in greedy.items() for s, g in enumerate(values)]


def test_differences_table_pairs_by_seed(toy):
    results = _runs({"majority_vote+grpo": [0.5, 0.6, 0.7], "soft_frequency+grpo": [0.7, 0.6, 0.9],
                     "judge_modulated+lse": [0.9, 0.9, 0.9]})
    rows = toy.differences(results, best="judge_modulated+lse")
    # judge − soft_frequency+lse is left out (not run); best − majority vote and the reward's part with grpo remain
    assert [(r["a"], r["b"]) for r in rows] == [("judge_modulated+lse", "majority_vote+grpo"),
                                                ("soft_frequency+grpo", "majority_vote+grpo")]
    # differences .2, 0, .2: mean .133, sd .115, half-width 4.303 · .115 / √3 = .287
    assert rows[1]["greedy_pass1"]["mean"] == pytest.approx(0.4 / 3)
    assert toy.format_differences(rows, 8).splitlines() == [
        "| method A − method B | isolates | seeds | greedy pass@1, mean diff [95% CI] | maj@8, mean diff [95% CI] |",
        "|---|---|---|---|---|",
        "| judge_modulated+lse − majority_vote+grpo | the best method against MM-UPT | 3 | +30.0 [+5.2, +54.8] "
        "| +0.0 [+0.0, +0.0] |",
        "| soft_frequency+grpo − majority_vote+grpo | the reward (soft against hard), with grpo | 3 "
        "| +13.3 [-15.4, +42.0] | +0.0 [+0.0, +0.0] |",
    ]
    # the best method is majority vote itself: that pair is left out
    assert [r["a"] for r in toy.differences(results, best="majority_vote+grpo")] == ["soft_frequency+grpo"]
    # CSRS with and without its visual perturbation: what the perturbation does, paired by seed
    csrs = toy.differences(_runs({"csrs": [0.2, 0.3, 0.4], "csrs_no_vsp": [0.1, 0.3, 0.2]}), best=None)
    assert [(r["a"], r["b"]) for r in csrs] == [("csrs", "csrs_no_vsp")]
    assert csrs[0]["greedy_pass1"]["mean"] == pytest.approx(0.1)


def _results_dir(path: Path, task: str, grid: int, base: dict, greedy: dict[str, list[float]]) -> str:
    path.mkdir()
    report = {"args": {"task": task, "grid": grid, "data_seed": 0, "eval_samples": 8}, "base": base,
              "base_judge_accuracy": 0.8, "runs": _runs(greedy)}
    (path / "results.json").write_text(json.dumps(report))
    return str(path)


def test_summarise_reads_several_runs(toy, tmp_path, capsys):
    weak = _results_dir(tmp_path / "grid3", "count_color", 3,
                        {"greedy_pass1": 0.3, "maj_at_k": 0.7, "pass_at_k": 0.9},
                        {"majority_vote+grpo": [0.5, 0.6, 0.7], "soft_frequency+lse": [0.8, 0.8, 0.8]})
    strong = _results_dir(tmp_path / "grid2", "count_color", 2,
                          {"greedy_pass1": 0.8, "maj_at_k": 0.85, "pass_at_k": 1.0},
                          {"majority_vote+grpo": [0.7, 0.8]})
    out = tmp_path / "summary"
    summary = toy.main(["--summarise", weak, strong, "--output-dir", str(out), "--figures-prefix", "b"])
    rows = summary["rows"]
    assert [(r["run"], r["method"]) for r in rows] == [
        ("grid3", "majority_vote+grpo"), ("grid3", "soft_frequency+lse"), ("grid2", "majority_vote+grpo")]
    assert rows[0]["gain"]["mean"] == pytest.approx(0.3)  # gains .2, .3, .4 over the base's .3
    assert rows[0]["base_gap"] == pytest.approx(0.4) and rows[2]["base_gap"] == pytest.approx(0.05)
    # gains -.1 and 0: mean -.05, sd .1/√2, half-width t(1) · sd / √2 = 12.706 · .05
    assert (rows[2]["gain"]["low"], rows[2]["gain"]["high"]) == pytest.approx((-0.05 - 0.6353, -0.05 + 0.6353))
    table = (out / "boundary.md").read_text().splitlines()
    assert capsys.readouterr().out.strip().splitlines()[-len(table):] == table
    # first the pre-flight's verdict on each base against what training did, then one row per method
    assert table[2:4] == [
        "| grid3 | 30.0 | 70.0 | 40.0 | likely to help | soft_frequency+lse, +50.0 [+50.0, +50.0] | 2 of 2 | helped "
        "| yes |",
        "| grid2 | 80.0 | 85.0 | 5.0 | uncertain | majority_vote+grpo, -5.0 [-68.5, +58.5] | 0 of 1 | hurt | – |",
    ]
    assert table[5:7] == ["| method A − method B | isolates | bases | pairs (base, seed) "
                          "| greedy pass@1, mean diff [95% CI] |", "|---|---|---|---|---|"]  # no key pair ran here
    assert table[10] == ("| grid3 | count_color | 3 | 0 | 30.0 | 70.0 | 40.0 | 90.0 | majority_vote+grpo | 3 "
                         "| +30.0 [+5.2, +54.8] |")
    assert (out / "b_boundary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((out / "boundary.json").read_text())
    assert len(saved["rows"]) == 3 and [r["right"] for r in saved["runs"]] == [True, None]
    hurt = toy.preflight_rows([dict(rows[0], run="grid4", base_greedy=0.2, base_maj=0.3, base_gap=0.1,
                                    gain={"mean": -0.1, "low": -0.2, "high": 0.0})])
    assert (hurt[0]["verdict"], hurt[0]["outcome"], hurt[0]["right"]) == ("likely to hurt", "hurt", True)
    with pytest.raises(FileNotFoundError, match="results.json does not exist: pass folders that a full run wrote"):
        toy.main(["--summarise", str(tmp_path), "--output-dir", str(out)])


# ----------------------------------------------------------------------------------------------------------------
# The two-turn chat (CSRS new_turn) and the chance judge


def test_two_turn_examples_continue_a_finished_turn(toy, tiny_processor):
    from self_evolve_trl.data.synthetic import Board, draw_board

    board = Board({(0, 0): "red", (1, 2): "red", (2, 2): "blue"}, "red",
                  "How many red squares are there in the image?", 2)
    solution = toy.worked_solution(board, 3, "rows")  # <think>rows 1+1+0=2</think>\boxed{2}
    prefix, rest = toy.split_solution(tiny_processor.tokenizer, solution, 0.5)
    assert prefix + rest == solution and 0 < len(prefix) < solution.index("</think>")
    assert toy.new_turn_target(solution, prefix, 2) == rest
    assert toy.new_turn_target(solution, solution[:-2], 2) == "\\boxed{2}"  # cut inside the box: a whole box again
    assert toy.new_turn_target("\\boxed{2}", "\\box", 2) == "\\boxed{2}"

    # the chat the base learns is the one CSRS's new_turn re-inference tokenizes (the provider's retrace_prompt, then
    # TRL's prepare_multimodal_messages and the chat template)
    from trl.data_utils import prepare_multimodal_messages

    image = draw_board(board.cells, 3)
    retrace = [*toy.prompt_messages(board, 3, image), {"role": "assistant", "content": prefix}]
    assert toy.encode_prompt(tiny_processor, toy.two_turn_messages(board, 3, image, prefix))["input_ids"].tolist() == \
        toy.encode_prompt(tiny_processor, prepare_multimodal_messages(retrace))["input_ids"].tolist()

    args = SimpleNamespace(grid=3)
    example = toy.two_turn_example(board, args, tiny_processor, random.Random(0), "rows")
    labels = example["labels"][0]
    text = tiny_processor.tokenizer.decode(example["input_ids"][0])
    target = tiny_processor.tokenizer.decode(labels[labels != -100])
    # the partial solution closes its own assistant turn; the new turn (the only trained part) finishes it
    first_turn = text.split("<|im_start|>assistant\n")[1]
    assert first_turn.endswith("<|im_end|>\n") and solution.startswith(first_turn.removesuffix("<|im_end|>\n"))
    assert text.count("<|im_start|>assistant\n") == 2 and text.endswith(target)
    assert target == toy.new_turn_target(solution, first_turn.removesuffix("<|im_end|>\n"), 2) + "<|im_end|>"


def test_chance_judge_shuffles_the_steps_outputs(toy, monkeypatch):
    from self_evolve_trl.judge.backends import JudgeOutput, backend_class
    from self_evolve_trl.judge.backends.reference import ReferenceJudge

    assert backend_class(toy.CHANCE_JUDGE) is toy.ShuffledJudge
    outputs = [JudgeOutput(text=f"\\boxed{{{i}}}") for i in range(10)]
    monkeypatch.setattr(ReferenceJudge, "judge", lambda self, requests, seeds=None: list(outputs))
    judge = toy.ShuffledJudge.__new__(toy.ShuffledJudge)
    judge.trainer = SimpleNamespace(state=SimpleNamespace(global_step=3), args=SimpleNamespace(seed=0))
    shuffled = judge.judge([None] * 10)
    assert sorted(o.text for o in shuffled) == sorted(o.text for o in outputs) and shuffled != outputs
    assert judge.judge([None] * 10) == shuffled  # the same step: the same permutation
    judge.trainer.state.global_step = 4
    assert judge.judge([None] * 10) != shuffled


# The expert judge: another model folder as the judge (a judge that can judge, where the base cannot)
EXPERT = "judge_modulated+lse (expert judge)"


def test_expert_judge_judges_with_the_named_model(toy, tiny_model_dir, tmp_path, monkeypatch):
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from self_evolve_trl.judge.backends import backend_class, reference

    assert backend_class(toy.EXPERT_JUDGE) is toy.ExpertJudge
    policy = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    expert = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        for parameter in expert.parameters():
            parameter.add_(0.5)
    expert.save_pretrained(tmp_path / "expert")
    processor.save_pretrained(tmp_path / "expert")
    accelerator = SimpleNamespace(unwrap_model=lambda m: m, prepare_model=lambda m, evaluation_mode: m)
    args = SimpleNamespace(per_device_train_batch_size=2, sync_ref_model=False, model_init_kwargs=None,
                           distributed_state=SimpleNamespace(distributed_type="NO"), trust_remote_code=False)
    # beta = 0: no reference model, so the reference judge would load a frozen copy of the policy; the expert judge
    # loads its own folder only
    trainer = SimpleNamespace(processing_class=processor, model=policy, ref_model=None, accelerator=accelerator,
                              args=args, is_deepspeed_enabled=False, is_fsdp_enabled=False)
    loaded = []
    create = reference.create_model_from_path
    monkeypatch.setattr(reference, "create_model_from_path",
                        lambda path, **kw: loaded.append(path) or create(path, **kw))

    monkeypatch.delenv(toy.EXPERT_JUDGE_ENV, raising=False)
    with pytest.raises(ValueError, match=f"needs \\${toy.EXPERT_JUDGE_ENV} set to a model folder"):
        toy.ExpertJudge(trainer)
    monkeypatch.setenv(toy.EXPERT_JUDGE_ENV, str(tmp_path / "expert"))
    judge = toy.ExpertJudge(trainer, temperature=0.0, max_tokens=8)
    assert judge.source == "expert" and str(tmp_path / "expert") in judge.describe()
    assert loaded == [str(tmp_path / "expert")]
    judged = dict(judge.frozen_model.named_parameters())
    for name, parameter in expert.named_parameters():
        assert torch.equal(judged[name], parameter), name
    assert not torch.equal(judged["lm_head.weight"], dict(policy.named_parameters())["lm_head.weight"])


def test_expert_judge_needs_its_folder(toy, tmp_path, capsys):
    with pytest.raises(SystemExit):
        toy.parse_args(["--methods", EXPERT])
    assert "needs --expert-judge DIR" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        toy.parse_args(["--expert-judge", str(tmp_path)])
    assert "no model folder there (no config.json)" in capsys.readouterr().err


def test_expert_judge_run_at_miniature_size(toy, tiny_model_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(toy.EXPERT_JUDGE_ENV, "")  # restored afterwards (the command sets it for its workers)
    argv = list(MINI)
    argv[argv.index("--methods") + 1] = "soft_frequency+lse"
    out = tmp_path / "toy"
    report = toy.main(argv + ["--output-dir", str(out), "--expert-judge", tiny_model_dir])
    printed = capsys.readouterr().out

    assert [run["method"] for run in report["runs"]] == ["soft_frequency+lse", EXPERT]  # added by --expert-judge
    assert 0.0 <= report["expert_judge_accuracy"] <= 1.0
    assert f"  expert judge {tiny_model_dir}: judge accuracy (held-out, half right)" in printed
    history = json.loads((out / "runs" / "judge_modulated+lse_expert_judge-seed0" / "log_history.json").read_text())
    assert all("judge/gate_mean" in entry for entry in history if "reward" in entry)
    pairs = [(d["a"], d["b"]) for d in report["differences"]]
    assert (EXPERT, "soft_frequency+lse") in pairs


def test_the_judge_budget_holds_the_longest_worked_verdict(toy, tiny_processor):
    """The judge writes a recount before its verdict: with two colours that is longer than one colour's budget, and a
    cut verdict has no score (every judgement then counts as a failure)."""
    tokenizer = tiny_processor.tokenizer
    rng = random.Random(0)
    for task, grid, completion_length in (("count_color", 3, 32), ("count_two_colors", 3, 64), ("count_color", 4, 32)):
        boards = toy.make_boards(100, task, grid, seed=1)
        longest = max(len(tokenizer(toy.judge_solution(b, grid, toy.candidate(b, grid, "rows", rng)[0]),
                                    add_special_tokens=False)["input_ids"]) for b in boards)
        assert longest < toy.judge_max_tokens(completion_length), (task, grid, longest)
    assert toy.judge_max_tokens(32) == 48  # the budget the one-colour results were measured with
    catalog = toy.methods(None, "template.txt", judge_tokens=toy.judge_max_tokens(64))
    assert catalog["judge_modulated+lse"].config["judge_max_tokens"] == 80
    assert catalog["judge_modulated+lse (chance judge)"].config["judge_max_tokens"] == 80
