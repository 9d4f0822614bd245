"""`benchmarks/self_evolution_toy.py` at a miniature size, so the benchmark cannot rot silently: the whole pipeline
(supervised base, a label-free run through `SelfEvolveGRPOTrainer` with the judge, held-out evaluation, table, figure)
and the pieces the comparison rests on (disjoint splits, loss masking, the judge prompt the base is taught)."""

import importlib.util
import json
import random
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest


SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "self_evolution_toy.py"


@pytest.fixture(scope="module")
def toy():
    spec = importlib.util.spec_from_file_location("self_evolution_toy", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


MINI = ["--sft-examples", "48", "--sft-steps", "3", "--sft-eval-every", "3", "--val-size", "4", "--rl-prompts", "8",
        "--rl-steps", "2", "--prompts-per-step", "2", "--num-generations", "4", "--eval-size", "6",
        "--eval-samples", "4", "--max-completion-length", "12", "--methods", "judge_modulated+lse", "--seeds", "0",
        "--workers", "1"]


def test_pipeline_at_miniature_size(toy, tmp_path, capsys):
    out = tmp_path / "toy"
    report = toy.main(MINI + ["--output-dir", str(out), "--figures-dir", str(tmp_path / "figures")])
    printed = capsys.readouterr().out.strip().splitlines()

    # the table: printed last, written to table.md, one row for the base and one per method
    table = (out / "table.md").read_text().strip().splitlines()
    assert printed[-len(table):] == table
    assert table[0].startswith("| method | seeds | greedy pass@1 | sampled pass@1 | maj@4 | pass@4 |")
    assert all(line.count("|") == 12 for line in table)
    assert [line.split("|")[1].strip() for line in table[2:]] == ["base (supervised)", "judge_modulated+lse"]
    assert [row["method"] for row in report["table"]] == ["base (supervised)", "judge_modulated+lse"]
    assert report["table"][1]["seeds"] == 1

    # the run: two logged training steps with the curves the report reads, and the judge's metrics
    history = json.loads((out / "runs" / "judge_modulated+lse-seed0" / "log_history.json").read_text())
    steps = [entry for entry in history if "reward" in entry]
    assert [entry["step"] for entry in steps] == [1, 2]
    for key in list(toy.CURVES.values()) + ["judge/gate_mean", "rewards/judge_modulated/mean"]:
        assert all(key in entry for entry in steps), key

    # held-out metrics are shares of the held-out set; the example outputs are kept
    (run,) = report["runs"]
    for key in ("greedy_pass1", "sampled_pass1", "maj_at_k", "pass_at_k"):
        assert 0.0 <= run["heldout"][key] <= 1.0
        assert 0.0 <= report["base"][key] <= 1.0
    assert run["heldout"]["pass_at_k"] >= run["heldout"]["maj_at_k"]
    assert len(run["heldout"]["examples"]) == 4

    saved = json.loads((out / "results.json").read_text())
    assert saved["sft"]["steps"] == 3 and saved["goal"]["best_method"] == "judge_modulated+lse"
    names = {"self_evolution_toy_curves.png", "self_evolution_toy_heldout.png"}
    assert {Path(p).name for p in report["figures"]} == names
    for path in report["figures"]:
        assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "figures" / "self_evolution_toy_heldout.png").exists()
    assert (out / "base" / "config.json").exists()


def test_held_out_boards_never_occur_in_training(toy):
    args = toy.parse_args(["--sft-examples", "400", "--val-size", "50", "--rl-prompts", "200", "--eval-size", "100",
                           "--grid", "2"])  # a 2x2 grid has few boards: many draws repeat
    splits = toy.draw_splits(args)
    seen = {b.key() for b in splits.sft + splits.val + splits.rl}
    assert len(splits.test) == 100
    assert not seen & {b.key() for b in splits.test}
    assert len({b.key() for b in splits.test}) == 100


def test_supervised_loss_is_on_the_target_only(toy, tiny_processor):
    from self_evolve_trl.synthetic import Board, draw_board

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
    from self_evolve_trl.judge.backends import ReferenceJudge
    from self_evolve_trl.judge.prompt import prompt_images, prompt_text
    from self_evolve_trl.synthetic import Board, draw_board

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
