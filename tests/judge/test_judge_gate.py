"""Actor–Judge: the gate g(s) and parsing the judge's score from its output."""

from __future__ import annotations

import pytest
import torch

from self_evolve_trl.rewards.judge import judge_gate, parse_judge_score
from tests.judge.judge_helpers import gate_formula


@pytest.mark.parametrize("score, gate", [(0.0, 0.800), (0.4, 0.900), (0.8, 1.000), (0.95, 1.100), (1.0, 1.185)])
def test_gate_equals_spec_check_values(score, gate):
    assert judge_gate(torch.tensor([score])).item() == pytest.approx(gate, abs=5e-4)


def test_gate_equals_released_table():
    # the gate at the released defaults, as the released code tabulates it
    table = {0.2: 0.804, 0.3: 0.824, 0.35: 0.854, 0.45: 0.946, 0.5: 0.976, 0.6: 0.996, 0.9: 1.015, 0.93: 1.054,
             0.97: 1.146}
    gates = judge_gate(torch.tensor(list(table))).tolist()
    assert gates == pytest.approx(list(table.values()), abs=5e-4)


def test_gate_parameters_change_it_and_the_clip_binds():
    s = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    assert judge_gate(s, lam_pos=0.5).tolist() == pytest.approx([gate_formula(0.0), gate_formula(0.5), 1.2])
    assert judge_gate(s, g_min=0.9)[0].item() == pytest.approx(0.9)
    assert judge_gate(s, t_low=0.6)[1].item() == pytest.approx(gate_formula(0.5, t_low=0.6))
    assert judge_gate(s, t_high=0.5, tau_high=0.1)[1].item() == pytest.approx(gate_formula(0.5, 0.5, 0.1))


def test_gate_keeps_shape_and_dtype():
    s = torch.rand(3, 4, dtype=torch.float64)
    g = judge_gate(s)
    assert g.shape == (3, 4) and g.dtype == torch.float64
    assert judge_gate([0, 1]).dtype == torch.float32


FULL = (
    "[BEGIN THOUGHT]\nThe candidate reads the angle right.\n[END THOUGHT]\n[BEGIN SCORES]\n"
    '{"answer_correctness": 1.0, "reasoning_quality": 0.5, "visual_grounding": 0.5, "overall_score": 0.1}\n'
    "[END SCORES]\n\\boxed{0.9}"
)


@pytest.mark.parametrize(
    "text, score",
    [
        ("Looks right. \\boxed{0.85}", 0.85),
        ("\\boxed{ 0.7 }", 0.7),
        ("\\boxed{$0.4$}", 0.4),
        ("\\boxed{1}", 1.0),
        ("\\boxed{1.3}", 1.0),  # clamped
        ("\\boxed{-0.2}", 0.0),  # clamped
        ("first \\boxed{0.2} then \\boxed{0.6}", 0.6),  # the last box
        (FULL, 0.9),  # the box wins over the JSON
        # JSON only
        ('{"answer_correctness": 1, "reasoning_quality": 0.5, "visual_grounding": 0.5, "overall_score": 0.75}', 0.75),
        ('Scores: {"scores": {"a": 1}, "overall_score": 0.35} done', 0.35),
        # truncated before the final box: the JSON of the score block
        (FULL.replace("\\boxed{0.9}", "\\boxed{0."), 0.1),
        (FULL[: FULL.index("[END SCORES]")], 0.1),  # cut inside the score block, after its JSON
        ('[SCORES] {"overall_score": 0.45} [END SCORES]', 0.45),
        # the score block's JSON before a JSON elsewhere
        ('I would say {"overall_score": 0.2}. [BEGIN SCORES] {"overall_score": 0.8} [END SCORES]', 0.8),
        ('\\boxed{good} [BEGIN SCORES] {"overall_score": 0.6} [END SCORES]', 0.6),  # box without a number
    ],
)
def test_parse_judge_score(text, score):
    assert parse_judge_score(text) == pytest.approx(score)


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "\x01\x02 boxel iTj++Qa<|vision_start|>",  # what the tiny random model writes
        "The candidate is correct.",
        '[BEGIN THOUGHT] fine [END THOUGHT] [BEGIN SCORES] {"answer_correctness": 1.0, "overall_sc',  # truncated
        "[BEGIN SCORES] {not json} [END SCORES] \\boxed{0.9",  # unclosed box, broken JSON
        "\\boxed{nan}",
        '{"overall_score": "high"}',
        '{"overall_score": true}',
        '{"answer_correctness": 1.0}',
    ],
)
def test_parse_failures_are_none(text):
    assert parse_judge_score(text) is None
