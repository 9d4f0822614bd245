"""The toy's judges besides the frozen base: one held at chance, and an expert (another, better-taught model).

Both are judge backends named as `module:Class` (README, "Add your own judge backend"):
- `ShuffledJudge` (`benchmarks.toy.judges:ShuffledJudge`): the reference judge's outputs, shuffled among the step's
  judgements. The scores keep their distribution (the same share of 1s, the same parse failures, the same cost) but
  no longer belong to the completion they judge, so the reward keeps the judge's noise and loses its information.
  Set against the same method with the real judge, the difference is what the judge's verdicts add.
- `ExpertJudge` (`benchmarks.toy.judges:ExpertJudge`): the model in the folder `$SELF_EVOLVE_TOY_EXPERT_JUDGE` (a base
  taught for longer) as the judge, in the training process. In this toy a model judges well only once it also solves
  the task, so a self-judge that is competent leaves its actor nothing to learn; a separate, stronger judge (as the
  `openai` backend would be with a larger model) is how the comparison gets a judge that can judge.
"""

from __future__ import annotations

import os
import random

from self_evolve_trl.judge.backends.reference import ReferenceJudge

EXPERT_JUDGE_ENV = "SELF_EVOLVE_TOY_EXPERT_JUDGE"


class ShuffledJudge(ReferenceJudge):
    name = "shuffled"

    def judge(self, requests, seeds=None):
        outputs = super().judge(requests, seeds)
        step = self.trainer.state.global_step
        random.Random(f"{self.trainer.args.seed}-{step}-{len(outputs)}").shuffle(outputs)
        return outputs

    def describe(self) -> str:
        return super().describe() + ", its outputs shuffled within each step (a judge at chance)"


class ExpertJudge(ReferenceJudge):
    name = "expert"

    def judge_weights(self, policy):
        self.path = os.environ.get(EXPERT_JUDGE_ENV)
        if not self.path or not os.path.isdir(self.path):
            raise ValueError(f"ExpertJudge needs ${EXPERT_JUDGE_ENV} set to a model folder, got {self.path!r} "
                             "(the benchmark's --expert-judge sets it).")
        return "expert", self.load_frozen(self.path, policy)

    def describe(self) -> str:
        return f"'expert' (the model in {self.path})"
