"""The Actor–Judge reward's public import path; the method lives in `self_evolve_trl.judge` (docs/math.md,
"Actor–Judge").

- `judge_gate(scores)`: the bounded gate g(s) on the judge's scores;
- `parse_judge_score(text)`: the judge's overall score in its output, or `None` when there is none;
- `judge_modulated(completions, group_size, judge_scores)`: r_i = clip(b_i·g(s_i) + f_i, 0, 1);
- `with_failure_policy`, `failure_policy_problem`, `ON_FAILURE_POLICIES`: the judge's failure policy as the reward
  binds it.
"""

from ..judge.gate import judge_gate
from ..judge.reward import ON_FAILURE_POLICIES, failure_policy_problem, judge_modulated, with_failure_policy
from ..judge.scores import parse_judge_score


__all__ = [
    "ON_FAILURE_POLICIES",
    "failure_policy_problem",
    "judge_gate",
    "judge_modulated",
    "parse_judge_score",
    "with_failure_policy",
]
