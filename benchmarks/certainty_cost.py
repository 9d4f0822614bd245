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

import argparse
import logging
import os
import statistics
import tempfile
import warnings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (each runs every variant once)")
    parser.add_argument("--steps", type=int, default=3, help="training steps per variant per round")
    parser.add_argument("--generations", type=int, default=8, help="G")
    parser.add_argument("--max_completion_length", type=int, default=24)
    args = parser.parse_args()
    if args.steps < 2:
        parser.error("--steps must be at least 2: the first step of each run warms up and is not timed")

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    warnings.filterwarnings("ignore")
    import transformers
    from transformers import AutoProcessor, PrinterCallback

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    logging.disable(logging.WARNING)

    from self_evolve_trl.data import load_training_dataset
    from self_evolve_trl.data.arguments import DataArguments
    from self_evolve_trl.data.tiny_model import build_tiny_qwen25vl
    from self_evolve_trl.training.config import SelfEvolveConfig
    from self_evolve_trl.training.trainer import SelfEvolveGRPOTrainer

    work = tempfile.mkdtemp(prefix="certainty-cost-")
    model_dir = build_tiny_qwen25vl(os.path.join(work, "tiny"))
    processor = AutoProcessor.from_pretrained(model_dir, padding_side="left")
    dataset = load_training_dataset(DataArguments(synthetic_size=64, instruction="Answer in \\boxed{}."))
    common = dict(
        use_cpu=True, bf16=False, gradient_checkpointing=False, report_to="none", save_strategy="no",
        num_generations=args.generations, per_device_train_batch_size=args.generations,
        max_completion_length=args.max_completion_length, learning_rate=1e-3, max_steps=args.steps, logging_steps=1,
        seed=0, dataloader_num_workers=0, answer_extractor="last_number", disable_tqdm=True,
    )
    variants = {name: dict(reward_funcs=[name]) for name in ("soft_frequency", "self_certainty", "token_entropy")}
    step_times = {name: [] for name in variants}
    shares = {name: [] for name in variants}
    for round_index in range(args.rounds):
        for name, overrides in variants.items():
            config = SelfEvolveConfig(output_dir=os.path.join(work, name), **common, **overrides)
            trainer = SelfEvolveGRPOTrainer(model=model_dir, args=config, train_dataset=dataset, processing_class=processor)
            trainer.remove_callback(PrinterCallback)
            trainer.train()
            steps = [entry for entry in trainer.state.log_history if "step_time" in entry]
            step_times[name] += [entry["step_time"] for entry in steps[1:]]  # the first step warms up
            shares[name] += [entry["certainty/seconds"] / entry["step_time"] for entry in steps[1:]
                             if "certainty/seconds" in entry]
        print(f"round {round_index + 1}/{args.rounds}: "
              + ", ".join(f"{n} {statistics.median(t):.3f}s" for n, t in step_times.items()), flush=True)

    base = statistics.median(step_times["soft_frequency"])
    print(f"\nTiny Qwen2.5-VL on CPU, G = {args.generations}, max_completion_length {args.max_completion_length}; "
          f"{args.rounds} interleaved rounds x {args.steps - 1} timed steps per variant (median step_time).")
    print(f"{'reward':<16} {'step s':>7} {'extra/base (side by side)':>26} {'pass share s':>13} {'s/(1-s)':>8}")
    for name, times in step_times.items():
        line = f"{name:<16} {statistics.median(times):>7.3f}"
        if shares[name]:
            share = statistics.median(shares[name])
            line += f" {(statistics.median(times) - base) / base:>26.2f} {share:>13.3f} {share / (1 - share):>8.3f}"
        print(line)


if __name__ == "__main__":
    main()
