"""The miniature label-free comparison behind `benchmarks/self_evolution_toy.py` (its one command):

- `data`: splits, prompts, worked / wrong / two-turn solutions and the judge's prompt;
- `base`: the supervised base (solutions, verification, two-turn continuations) and its verification phase;
- `evaluation`: held-out greedy pass@1, sampled pass@1, maj@k, pass@k and the judge's accuracy;
- `methods`: the method table (each method's reward and advantage; everything else shared);
- `judges`: the chance judge (the reference judge's scores shuffled within a step), the expert judge (another
  model);
- `runs`: one label-free run per (method, seed), in worker processes;
- `stats`: curve summaries, means ± sd and t-intervals of paired differences;
- `report`: the tables and the goal check; `figures`: the PNGs;
- `summarise`: several runs' results side by side (gain against the base's competence);
- `cli`: the arguments and the pipeline.
"""
