"""A judge held at chance: the reference judge's outputs, shuffled among the step's judgements.

Named as `judge_backend: benchmarks.toy.judges:ShuffledJudge` (README, "Add your own judge backend"). The scores keep
their distribution (the same share of 1s, the same parse failures, the same cost) but no longer belong to the
completion they judge, so the reward keeps the judge's noise and loses its information. Set against the same method
with the real judge, the difference is what the judge's verdicts add.
"""

from __future__ import annotations

import random

from self_evolve_trl.judge.backends.reference import ReferenceJudge


class ShuffledJudge(ReferenceJudge):
    name = "shuffled"

    def judge(self, requests, seeds=None):
        outputs = super().judge(requests, seeds)
        step = self.trainer.state.global_step
        random.Random(f"{self.trainer.args.seed}-{step}-{len(outputs)}").shuffle(outputs)
        return outputs

    def describe(self) -> str:
        return super().describe() + ", its outputs shuffled within each step (a judge at chance)"
