"""The extra cost of the `token_stats` pass (self-certainty, token entropy), as a ratio of the base training step
time, on the tiny Qwen2.5-VL (CPU).

Three trainers on the same data, seed and batch geometry, run side by side in interleaved rounds:
- base: the same step without the pass (`soft_frequency` reward);
- `self_certainty` and `token_entropy`: one extra no-grad forward pass of the policy over prompt + completion.
Step time is TRL's `step_time` (the optimizer step's `training_step` calls: generation, rewards, loss, backward).
The figures printed last: the median step time of each, the extra time as a ratio of the base step time (side by
side, noisy on a shared machine), and the pass's share s of its own step (`certainty/seconds` / `step_time`,
measured inside each step), with s / (1 - s), the extra over the rest of that step.

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/certainty_cost.py [--rounds 5 --steps 3]
"""

from __future__ import annotations

import statistics

from step_cost import common_config, cost_parser, median_step, parse_cost_args, run_rounds, tiny_setup


def main() -> None:
    args = parse_cost_args(cost_parser(__doc__.splitlines()[0]))
    variants = {name: dict(reward_funcs=[name]) for name in ("soft_frequency", "self_certainty", "token_entropy")}
    entries = run_rounds(args, tiny_setup("certainty-cost-"), common_config(args), variants)

    base = median_step(entries["soft_frequency"])
    print(f"\nTiny Qwen2.5-VL on CPU, G = {args.generations}, max_completion_length {args.max_completion_length}; "
          f"{args.rounds} interleaved rounds x {args.steps - 1} timed steps per variant (median step_time).")
    print(f"{'reward':<16} {'step s':>7} {'extra/base (side by side)':>26} {'pass share s':>13} {'s/(1-s)':>8}")
    for name, steps in entries.items():
        line = f"{name:<16} {median_step(steps):>7.3f}"
        shares = [e["certainty/seconds"] / e["step_time"] for e in steps if "certainty/seconds" in e]
        if shares:
            share = statistics.median(shares)
            line += f" {(median_step(steps) - base) / base:>26.2f} {share:>13.3f} {share / (1 - share):>8.3f}"
        print(line)


if __name__ == "__main__":
    main()
