"""The extra cost of TTRL's larger vote: a training step with M = G extra vote samples per prompt against M = 0, on
the tiny Qwen2.5-VL (CPU).

Two trainers on the same data, seed and batch geometry (`ttrl_vote` reward, G trained completions per prompt), run
side by side in interleaved rounds: `vote_samples: 0` (the vote of the G alone; no extra generation) and
`vote_samples: G` (TTRL's ratio: 64 votes for 32 trained). Step time is TRL's `step_time` (generation, extra votes,
rewards, loss, backward). Printed last: the median step time of each, their ratio (side by side), and the share of
the M = G step spent drawing the extra samples (`ttrl/seconds` / `step_time`, measured inside each step).

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/ttrl_cost.py [--rounds 5 --steps 3 --generations 8]
"""

from __future__ import annotations

import statistics

from step_cost import common_config, cost_parser, median_step, parse_cost_args, run_rounds, tiny_setup


def main() -> None:
    parser = cost_parser(__doc__.splitlines()[0])
    args = parse_cost_args(parser)
    common = dict(**common_config(args), reward_funcs=["ttrl_vote"])
    variants = {"M = 0": dict(vote_samples=0), f"M = G = {args.generations}": dict(vote_samples=args.generations)}
    entries = run_rounds(args, tiny_setup("ttrl-cost-"), common, variants)

    base, voted = (median_step(steps) for steps in entries.values())
    shares = [e["ttrl/seconds"] / e["step_time"] for steps in entries.values() for e in steps if "ttrl/seconds" in e]
    print(f"\nTiny Qwen2.5-VL on CPU, G = {args.generations}, max_completion_length {args.max_completion_length}; "
          f"{args.rounds} interleaved rounds x {args.steps - 1} timed steps per variant (median step_time).")
    print(f"M = 0: {base:.3f} s   M = G: {voted:.3f} s   ratio (side by side): {voted / base:.2f}   "
          f"extra-vote share of the M = G step: {statistics.median(shares):.2f}")


if __name__ == "__main__":
    main()
