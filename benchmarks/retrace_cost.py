"""The extra cost of CSRS re-inference, as a ratio of the base training step time, on the tiny Qwen2.5-VL (CPU).

Three trainers on the same data, seed and batch geometry, run side by side in interleaved rounds:
- base: the same step without re-inference (`soft_frequency` reward);
- CSRS `new_turn` and CSRS `continuation`: `retrace_frequency` with K re-inferences per completion from one anchor,
  all of a step's re-inferences in one generation call (the default);
- CSRS `new_turn` with `retrace_generation_batch_size: G`: re-inference calls no larger than the rollout batch.
Step time is TRL's `step_time` (the optimizer step's `training_step` calls: generation, rewards, loss, backward).
The figures printed last: the median step time of each, the extra time of each CSRS mode as a ratio of the base
step time, the re-inference time share measured inside the CSRS steps (`retrace/time_share`), and the tokens the
re-inferences generate per rollout token. The side-by-side ratio is noisy on a shared machine; the in-step share s
is measured inside each CSRS step and gives the extra as s / (1 - s) of the rest of that step.

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/retrace_cost.py [--rounds 5 --steps 3 --samples 3]
"""

from __future__ import annotations

import statistics

from step_cost import common_config, cost_parser, median_step, parse_cost_args, run_rounds, tiny_setup


def main() -> None:
    parser = cost_parser(__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=3, help="K, re-inferences per anchor")
    parser.add_argument("--anchor", type=float, default=0.7)
    args = parse_cost_args(parser)
    common = dict(**common_config(args), retrace_anchors=[args.anchor], retrace_samples_per_anchor=args.samples,
                  retrace_visual_perturbation=True)
    variants = {
        "base": dict(reward_funcs=["soft_frequency"]),
        "csrs new_turn": dict(reward_funcs=["retrace_frequency"], retrace_mode="new_turn"),
        "csrs continuation": dict(reward_funcs=["retrace_frequency"], retrace_mode="continuation"),
        # memory-bounded: re-inference calls no larger than the rollout batch (G rows)
        "csrs new_turn, G-row calls": dict(reward_funcs=["retrace_frequency"], retrace_mode="new_turn",
                                           retrace_generation_batch_size=args.generations),
    }
    entries = run_rounds(args, tiny_setup("retrace-cost-"), common, variants)

    base = median_step(entries["base"])
    print(f"\nTiny Qwen2.5-VL on CPU, G = {args.generations}, K = {args.samples}, anchor {args.anchor}, "
          f"max_completion_length {args.max_completion_length}, VSP on; {args.rounds} interleaved rounds x "
          f"{args.steps - 1} timed steps per variant (median step_time).")
    print(f"{'variant':<27} {'step s':>7} {'extra/base (side by side)':>26} {'re-inference share s':>21} "
          f"{'s/(1-s)':>8} {'re-inference tokens / rollout tokens':>37}")
    for name, steps in entries.items():
        line = f"{name:<27} {median_step(steps):>7.3f}"
        if name != "base":
            share = statistics.median(e["retrace/time_share"] for e in steps if "retrace/time_share" in e)
            tokens = statistics.median(e["retrace/tokens_per_completion"] / e["completions/mean_length"]
                                       for e in steps if "retrace/tokens_per_completion" in e)
            line += (f" {(median_step(steps) - base) / base:>26.2f} {share:>21.2f} {share / (1 - share):>8.2f}"
                     f" {tokens:>37.2f}")
        print(line)


if __name__ == "__main__":
    main()
