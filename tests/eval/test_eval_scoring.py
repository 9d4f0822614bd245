"""Scoring of each benchmark's answer format on known cases, the aggregate metrics, answer extraction, prompts."""

import pytest

from self_evolve_trl.eval.benchmarks import BENCHMARKS, EvalItem, parse_option_string
from self_evolve_trl.eval.config import DEFAULT_CHOICES_HINT
from self_evolve_trl.eval.extraction import extract_by_rules
from self_evolve_trl.eval.loading import LoadedBenchmark, belongs_to_split
from self_evolve_trl.eval.runner import Extractor, build_conversation, score_benchmark
from self_evolve_trl.eval.scoring import (
    choice_letter,
    choice_letters,
    dynamath_accuracy,
    mean_metrics,
    reference_letters,
    score_answer,
    score_samples,
    vote_key,
    wemath_metrics,
)


def item_of(name, row, index=0, options=None):
    return BENCHMARKS[name].make_item(row, index, options or {})


# ----------------------------------------------------------------------------------------------------------------
# MathVision: choice questions (options listed) and free-form ones


def test_mathvision_items():
    item = item_of("mathvision", {"id": "7", "question": "<image1>Which is red?", "options": ["square", "circle"],
                                  "answer": "B"})
    assert item.question == "Which is red?\nChoices:\n(A) square\n(B) circle"
    assert (item.id, item.answer_type, item.options) == ("7", "choice", {"A": "square", "B": "circle"})
    free = item_of("mathvision", {"id": "8", "question": "Length? <image1>", "options": [], "answer": "\\frac{1}{2}"})
    assert (free.question, free.answer_type, free.options) == ("Length?", "free", {})
    # a letter answer with the options drawn in the image is still a choice question
    assert item_of("mathvision", {"id": "9", "question": "q", "options": [], "answer": "C"}).answer_type == "choice"


@pytest.mark.parametrize(
    "prediction, expected",
    [("B", True), ("(b)", True), ("B. circle", True), ("Option B", True), ("\\text{B}", True), ("circle", True),
     ("A", False), ("square", False), ("(C)", False), ("triangle", False)],
)
def test_mathvision_choice(prediction, expected):
    assert score_answer(prediction, "B", "choice", {"A": "square", "B": "circle", "C": "1/2"}) is expected


@pytest.mark.parametrize(
    "prediction, reference, expected",
    [("0.5", "\\frac{1}{2}", True), ("140^\\circ", "140", True), ("2\\sqrt{3}", "\\sqrt{12}", True),
     ("12 cm", "12", True), ("13", "12", False), (None, "12", False)],
)
def test_free_form_math_equivalence(prediction, reference, expected):
    assert score_answer(prediction, reference, "free") is expected


def test_choice_by_option_content_uses_math_equivalence():
    options = {"A": "\\frac{1}{4}", "B": "\\frac{1}{2}", "C": "1"}
    assert choice_letter("0.5", options) == "B"
    assert choice_letter("A cat", options) is None  # an article is not an option letter
    assert choice_letter("0.3", options) is None


# ----------------------------------------------------------------------------------------------------------------
# MathVerse: Vision Only by default, multi-choice letters and free-form answers


def test_mathverse_items_and_version_filter():
    row = {"sample_index": "3", "problem_version": "Vision Only", "question": "", "answer": "A",
           "question_type": "multi-choice"}
    item = item_of("mathverse", row)
    assert (item.id, item.answer_type, item.question) == ("3", "choice", "Answer the question shown in the image.")
    assert item_of("mathverse", {**row, "problem_version": "Text Dominant"}) is None
    assert item_of("mathverse", {**row, "problem_version": "Text Dominant"}, options={"mathverse_version": "all"})
    free = item_of("mathverse", {**row, "question_type": "free-form", "answer": "5"})
    assert free.answer_type == "free" and score_answer("5 cm", free.reference, "free")
    assert score_answer("A", "A", "choice") and not score_answer("5", "A", "choice")


MATHVERSE_ROW = {"sample_index": "5", "problem_version": "Vision Only", "question": "",
                 "question_type": "multi-choice"}


@pytest.mark.parametrize(
    "answer, options_text, right, wrong",
    [("False", "A:True\nB:False", ["B", "(B) False", "False"], ["A", "True"]),
     ("053 ^\\circ T", "A:053 ^\\circ T\nB:233 ^\\circ T\nC:037 ^\\circ T", ["A", "053 ^\\circ T"], ["B", "C"]),
     ("A\nC", "A:3\nB:4\nC:5\nD:6", ["A, C", "C, A", "AC"], ["A", "C", "A, B, C"])],
)
def test_mathverse_references_are_read_through_the_options(answer, options_text, right, wrong):
    """Four MathVerse references give the option's text and two name two letters, one a line."""
    item = item_of("mathverse", {**MATHVERSE_ROW, "answer": answer,
                                 "question_for_eval": f"Which is right?\nChoices:\n{options_text}"})
    assert item.answer_type == ("choices" if "\n" in answer else "choice")
    for prediction in right:
        assert score_answer(prediction, item.reference, item.answer_type, item.options), prediction
    for prediction in wrong:
        assert not score_answer(prediction, item.reference, item.answer_type, item.options), prediction


def test_reference_letters():
    options = {"A": "True", "B": "False", "C": "AC", "D": "\\frac{1}{2}"}
    assert reference_letters("(b)", options) == {"B"} and reference_letters("false", options) == {"B"}
    assert reference_letters("AC", options) == {"C"}  # an option's text before a set of letters
    assert reference_letters("B, D", options) == {"B", "D"} and reference_letters("0.5", options) == {"D"}
    assert reference_letters("7", options) is None and reference_letters("False") is None
    # a one-letter reference is its letter, unless it is the text of an option and no option's letter
    assert reference_letters("I", {"A": "I", "B": "II"}) == {"A"} and reference_letters("G") == {"G"}
    assert reference_letters("B", {"A": "B", "B": "A"}) == {"B"}
    # a reference naming no option is compared as a value
    assert score_answer("7.0", "7", "choice", options) and not score_answer("A", "7", "choice", options)


# ----------------------------------------------------------------------------------------------------------------
# WeMath: option letters, and the four-dimensional metrics over composite problems


def test_wemath_items():
    item = item_of("wemath", {"ID": "12", "key": "2steps_multi", "question": "How long?",
                              "option": "A. 3 cm; B. 4 cm; C. No correct answer", "answer": "B"})
    assert (item.id, item.group, item.part) == ("12/2steps_multi", "12", "2steps_multi")
    assert item.question == "How long?\nA. 3 cm; B. 4 cm; C. No correct answer"
    assert item.options == {"A": "3 cm", "B": "4 cm", "C": "No correct answer"}
    assert score_answer("4", "B", "choice", item.options) and not score_answer("3", "B", "choice", item.options)


def test_parse_option_string_forms():
    assert parse_option_string("A: 1\nB: 2\nC: 3") == {"A": "1", "B": "2", "C": "3"}
    assert parse_option_string("(A) 30° (B) 45°") == {"A": "30°", "B": "45°"}
    assert parse_option_string("") == {}


@pytest.mark.parametrize(
    "text, expected",
    [("A. Point A. B. Point B; C. 5", {"A": "Point A.", "B": "Point B", "C": "5"}),  # a letter inside an option
     ("A. 1 B. Plan B. C. 2", {"A": "1", "B": "Plan B.", "C": "2"}),
     ("A. x; C. y", {"A": "x", "C": "y"}),  # a letter missing: the next one in order
     ("A:1.5 B:2.5 C:3.5", {"A": "1.5", "B": "2.5", "C": "3.5"})],
)
def test_parse_option_string_reads_markers_in_letter_order(text, expected):
    assert parse_option_string(text) == expected


def test_wemath_four_dimensional_metrics():
    rows = [
        ("P1", "2steps_1", True), ("P1", "2steps_2", True), ("P1", "2steps_multi", True),  # CM (strict and loose)
        ("P2", "2steps_1", True), ("P2", "2steps_2", False), ("P2", "2steps_multi", True),  # RM strict, CM loose
        ("P3", "2steps_1", False), ("P3", "2steps_2", False), ("P3", "2steps_multi", True),  # RM strict and loose
        ("P4", "3steps_1", True), ("P4", "3steps_2", True), ("P4", "3steps_3", True),
        ("P4", "3steps_multi", False),  # IG
        ("P5", "3steps_1", False), ("P5", "3steps_2", True), ("P5", "3steps_3", True),
        ("P5", "3steps_multi", False),  # IK
        ("P6", "2steps_1", True),  # incomplete (a --limit cut): left out of the four dimensions
    ]
    metrics = wemath_metrics(*zip(*rows))
    assert metrics["composite_problems"] == 5
    assert {k: metrics[k] for k in ("IK", "IG", "CM_strict", "CM_loose", "RM_strict", "RM_loose")} == dict(
        IK=1, IG=1, CM_strict=1, CM_loose=2, RM_strict=2, RM_loose=1)
    assert metrics["score_strict"] == pytest.approx(100 * (5 - 0.5 * 1 - 2 - 1) / 5)  # 30.0
    assert metrics["score_loose"] == pytest.approx(100 * (5 - 0.5 * 1 - 1 - 1) / 5)  # 50.0
    assert metrics["accuracy"] == pytest.approx(100 * 12 / 18)
    assert wemath_metrics(["P"], ["2steps_1"], [True])["score_strict"] is None


# ----------------------------------------------------------------------------------------------------------------
# LogicVista: one or more letters


@pytest.mark.parametrize(
    "prediction, expected",
    [("A, C", True), ("C,A", True), ("AC", True), ("(A) and (C)", True), ("A C", True), ("A", False),
     ("A, B, C", False), ("C", False), ("apples", False)],
)
def test_logicvista_letter_sets(prediction, expected):
    assert score_answer(prediction, "A, C", "choices") is expected


def test_logicvista_numbered_option_reference_is_a_value():
    """One LogicVista question numbers its options ("Select from 1-5", reference `3`): the reference is compared as a
    value, and the question gets no letter hint."""
    item = item_of("logicvista", {"id": "v1_20", "question": "Which is correct? Select from 1-5", "answer": "3"})
    assert item.answer_type == "free"
    assert score_answer("3", item.reference, item.answer_type, item.options)
    assert not score_answer("C", item.reference, item.answer_type, item.options)
    assert score_answer("3", "3", "choices")  # scored as a value under the letter-set type too


def test_logicvista_single_letter():
    assert score_answer("(D)", "D", "choices") and score_answer("D.", "D", "choices")
    assert choice_letters("None of them") is None


def test_letter_sets_are_only_the_letters_offered():
    """An all-caps word is not a set of option letters: only A-H count (or the options listed)."""
    assert choice_letters("NO") is None and vote_key("NO", "choices") is None
    assert choice_letters("BAD") == {"A", "B", "D"}
    assert choice_letters("ACE", offered="ABCD") is None and choice_letters("AC", offered="ABCD") == {"A", "C"}
    assert not score_answer("ACE", "A, C", "choices", {"A": "x", "B": "y", "C": "z", "D": "w"})
    # "NO" twice no longer outvotes the one letter answer
    _, group_vote, majority_right = score_samples(["NO", "NO", "A"], "A", "choices")
    assert group_vote.majority_answer == "A" and majority_right
    item = item_of("logicvista", {"id": "1", "question": "Which? Choices: (A) x (B) y (C) z", "answer": "A, C"})
    assert (item.answer_type, sorted(item.options)) == ("choices", ["A", "B", "C"])


# ----------------------------------------------------------------------------------------------------------------
# DynaMath: letters, floats within 1e-3, text; average and worst case over variants


def test_dynamath_items():
    row = {"id": "17", "question": "Slope?", "ground_truth": "2.500", "answer_type": "float",
           "__split": "sample_variant3"}
    item = item_of("dynamath", row)
    assert (item.id, item.group, item.answer_type) == ("17/sample_variant3", "17", "float")
    assert item_of("dynamath", {**row, "answer_type": "multiple choice"}).answer_type == "choice"
    assert item_of("dynamath", {**row, "answer_type": "text"}).answer_type == "free"


@pytest.mark.parametrize(
    "answer_type, reference, prediction, kind",
    [("int", "-15.700000000000001", "-15.7", "float"), ("int", "5.000000000000001", "5", "float"),
     ("single answer", "49", "49.0004", "float"), ("single answer", "Sunday", "Sunday", "free")],
)
def test_dynamath_int_and_single_answer_types(answer_type, reference, prediction, kind):
    """The seed data's other answer types: `int` and numeric `single answer` references are numbers (within 1e-3)."""
    item = item_of("dynamath", {"id": "477", "question": "Sum of the elements of A?", "ground_truth": reference,
                                "answer_type": answer_type})
    assert item.answer_type == kind
    assert score_answer(prediction, item.reference, item.answer_type)


@pytest.mark.parametrize(
    "question, options, right",
    [("Which group has the largest Y value?\nA. Group 1\nB. Group 2\nC. Group 3", ["Group 1", "Group 2", "Group 3"],
      "Group 2"),
     ("Which data structure is the following graph shown?  (A) heap (B) stack (C) binary tree (D) planted tree ",
      ["heap", "stack", "binary tree", "planted tree"], "stack"),
     ("What is the intersection of sets A and B?\nA: [1, 4, 13]\nB: [3, 7]\nC: [3, 5, 7]\nD: [5, 10]\n",
      ["[1, 4, 13]", "[3, 7]", "[3, 5, 7]", "[5, 10]"], "[3, 7]")],
)
def test_dynamath_options_without_a_choices_marker(question, options, right):
    """10 of DynaMath's 174 multiple-choice seeds list their options with no `Choices:` before them."""
    item = item_of("dynamath", {"id": "366", "question": question, "ground_truth": "B",
                                "answer_type": "multiple choice"})
    assert list(item.options.values()) == options
    assert score_answer(right, "B", "choice", item.options) and score_answer("(B)", "B", "choice", item.options)
    assert not score_answer(options[0], "B", "choice", item.options)


@pytest.mark.parametrize(
    "prediction, reference, expected",
    [("3.142", "3.1416", True), ("3.15", "3.1416", False), ("\\pi", "3.142", True), ("1/3", "0.333", True),
     ("2\\sqrt{2}", "2.828", True), ("2.5", "2.500", True), ("x", "2.5", False)],
)
def test_dynamath_float_tolerance(prediction, reference, expected):
    assert score_answer(prediction, reference, "float") is expected


def test_dynamath_average_and_worst_case():
    groups = ["q1"] * 3 + ["q2"] * 3 + ["q3"] * 3
    correct = [True, True, True, True, False, True, False, False, False]
    result = dynamath_accuracy(groups, correct)
    assert result["average_case"] == pytest.approx(100 * 5 / 9)
    assert result["worst_case"] == pytest.approx(100 / 3)
    assert result["seed_questions"] == 3


# ----------------------------------------------------------------------------------------------------------------
# Extraction, prompts, sampled pass@1 and maj@k


@pytest.mark.parametrize(
    "text, expected",
    [("<think>x=3</think> \\boxed{2} ... so \\boxed{\\frac{1}{2}}", ("\\frac{1}{2}", "boxed")),
     ("<think>...</think><answer>B</answer>", ("B", "answer_tag")),
     ("Therefore, the final answer is 12.", ("12", "phrase")),
     ("Answer: (C)", ("(C)", "phrase")),
     ("So the answer is: B.", ("B", "phrase")),
     ("The correct answer is: A, C.", ("A, C", "phrase")),
     ("The answer is B, because A fails.", ("B", "phrase")),  # the justification is not the answer
     ("The answer is 12 since 3 * 4 = 12", ("12", "phrase")),
     ("Final Answer: The final answer is $\\frac12$.", ("\\frac12", "phrase")),  # the phrase repeated inside
     ("Final Answer: The final answer is $\\frac{1}{2}$. I hope it is correct.", ("\\frac{1}{2}", "phrase")),
     ("**Answer:** C", ("C", "phrase")),
     ("I do not know", (None, None))],
)
def test_rule_extraction(text, expected):
    assert extract_by_rules(text) == expected


def test_prompt_is_the_training_prompt_plus_choice_hint():
    item = EvalItem(id="1", question="Which?\nChoices:\n(A) 1\n(B) 2", reference="A", answer_type="choice")
    conversation = build_conversation(item, "Box it.", "Answer with the letter.", n_images=1)
    assert conversation == [{"role": "user", "content": [
        {"type": "image", "text": None},
        {"type": "text", "text": "Which?\nChoices:\n(A) 1\n(B) 2\nAnswer with the letter. Box it."}]}]
    geometry = EvalItem(id="2", question="<image>Find x.", reference="3", answer_type="free")
    content = build_conversation(geometry, "Box it.", "Answer with the letter.", n_images=1)[0]["content"]
    assert content == [{"type": "image", "text": None}, {"type": "text", "text": "Find x. Box it."}]


def test_letter_set_questions_get_the_plural_hint():
    item = EvalItem(id="1", question="Which two?", reference="A, C", answer_type="choices")
    text = build_conversation(item, "Box it.", "The letter.", 1, "The letter(s).")[0]["content"][1]["text"]
    assert text == "Which two?\nThe letter(s). Box it."
    assert build_conversation(item, "Box it.", "The letter.", 1, "")[0]["content"][1]["text"] == "Which two? Box it."
    assert DEFAULT_CHOICES_HINT == (
        "For a multiple-choice question, the answer is the letter(s) of the correct option(s), separated by commas.")


def test_sampled_pass_at_1_and_majority_vote():
    items = [EvalItem(id="c", question="q", reference="B", answer_type="choice", options={"A": "1", "B": "2"}),
             EvalItem(id="f", question="q", reference="1/2", answer_type="free"),
             EvalItem(id="n", question="q", reference="7", answer_type="free")]
    loaded = LoadedBenchmark(BENCHMARKS["mathvision"], items, dataset=None, image_column="image", source="test")
    greedy = {"c": ["\\boxed{A}"], "f": ["\\boxed{0.5}"], "n": ["no answer"]}
    sampled = {"c": ["\\boxed{(B)}", "\\boxed{2}", "\\boxed{A}"],  # B twice (letter, then option content): B wins
               "f": ["\\boxed{0.5}", "\\boxed{3}", "\\boxed{\\frac{1}{2}}"],
               "n": ["\\boxed{6}", "nothing", "\\boxed{6}"]}
    result = score_benchmark(loaded, greedy, sampled, Extractor(None))
    modes = result["modes"]
    assert modes["greedy"]["accuracy"] == pytest.approx(100 / 3)
    # per sample index j: j=0 -> c, f right; j=1 -> c right; j=2 -> f right
    assert modes["sampled"]["accuracy"] == pytest.approx((200 / 3 + 100 / 3 + 100 / 3) / 3)
    assert modes["majority"]["accuracy"] == pytest.approx(200 / 3)
    assert result["extraction"] == {"boxed": 10, "none": 2}


def test_mean_metrics():
    runs = [{"a": 10.0, "n": 2, "s": "x"}, {"a": 20.0, "n": 2, "s": "x"}]
    assert mean_metrics(runs) == {"a": 15.0, "n": 2, "s": "x"}


def test_local_files_are_matched_to_splits_by_name(tmp_path):
    root = str(tmp_path)
    assert belongs_to_split(f"{root}/data/testmini-00000-of-00001.parquet", root, "testmini")
    assert not belongs_to_split(f"{root}/data/testmini-00000-of-00001.parquet", root, "test")
    assert belongs_to_split(f"{root}/default/testmini/0000.parquet", root, "testmini")
    assert not belongs_to_split(f"{root}/data/sample_variant10-0.parquet", root, "sample_variant1")
    # the hub's names: exact stems and shards (with or without a hash suffix); a longer name is another split
    assert belongs_to_split(f"{root}/testmini.parquet", root, "testmini")
    assert not belongs_to_split(f"{root}/testmini_text_only.parquet", root, "testmini")
    assert belongs_to_split(f"{root}/testmini_text_only.parquet", root, "testmini_text_only")
    assert belongs_to_split(f"{root}/data/test-00000-of-00002-5f3c2b1e0a9d.parquet", root, "test")
    assert not belongs_to_split(f"{root}/data/test_extra-00000-of-00001.parquet", root, "test")
    # DynaMath's hub files are named sample{N}, its splits sample_variant{N}
    assert belongs_to_split(f"{root}/data/sample1-00000-of-00001.parquet", root, "sample_variant1", "sample1")
    assert not belongs_to_split(f"{root}/data/sample10-00000-of-00010.parquet", root, "sample_variant1", "sample1")


def test_majority_of_float_answers_votes_on_values():
    items = [EvalItem(id="d", question="q", reference="3.1416", answer_type="float")]
    loaded = LoadedBenchmark(BENCHMARKS["dynamath"], [EvalItem(**{**items[0].__dict__, "group": "s"})], None, "i", "t")
    sampled = {"d": ["\\boxed{3.1416}", "\\boxed{4}", "\\boxed{\\pi}", "\\boxed{4.0}", "\\boxed{3.14159}"]}
    result = score_benchmark(loaded, {"d": ["\\boxed{4}"]}, sampled, Extractor(None))
    assert result["modes"]["majority"]["accuracy"] == 100.0  # 3.142 three times (3.1416, pi, 3.14159) beats 4 twice
    assert result["modes"]["greedy"]["worst_case"] == 0.0


def test_mathverse_and_dynamath_options_from_the_question_text():
    row = {"sample_index": "4", "problem_version": "Vision Only", "question": "", "answer": "B",
           "question_type": "multi-choice",
           "question_for_eval": "As shown in the figure, find angle A.\nChoices:\nA:20°\nB:25°\nC:40°\nD:50°"}
    item = item_of("mathverse", row)
    assert item.options == {"A": "20°", "B": "25°", "C": "40°", "D": "50°"}
    assert score_answer("25^\\circ", "B", "choice", item.options)
    assert not score_answer("40", "B", "choice", item.options)
    dyn = item_of("dynamath", {"id": "3", "question": "Which graph? Choices: (A) f (B) g (C) h",
                               "ground_truth": "C", "answer_type": "multiple choice"})
    assert dyn.options == {"A": "f", "B": "g", "C": "h"}


def test_unreachable_llm_extractor_is_a_clear_error(tmp_path):
    import socket

    from self_evolve_trl.eval.benchmarks import EvalError
    from self_evolve_trl.eval.extraction import LLMExtractor

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    extractor = LLMExtractor(model="judge", base_url=f"http://127.0.0.1:{port}/v1", timeout=5, max_retries=0,
                             cache_path=str(tmp_path / "cache.jsonl"))
    with pytest.raises(EvalError, match=f"LLM extractor judge at http://127.0.0.1:{port}/v1 failed .*run the same"):
        extractor("question", "no answer here")
