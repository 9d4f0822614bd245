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
    parser.add_argument("--samples", type=int, default=3, help="K, re-inferences per anchor")
    parser.add_argument("--anchor", type=float, default=0.7)
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

    from self_evolve_trl.data.arguments import DataArguments

    from self_evolve_trl.training.config import SelfEvolveConfig
    from self_evolve_trl.data import load_training_dataset
    from self_evolve_trl.data.tiny_model import build_tiny_qwen25vl
    from self_evolve_trl.training.trainer import SelfEvolveGRPOTrainer

    work = tempfile.mkdtemp(prefix="retrace-cost-")
    model_dir = build_tiny_qwen25vl(os.path.join(work, "tiny"))
    processor = AutoProcessor.from_pretrained(model_dir, padding_side="left")
    dataset = load_training_dataset(DataArguments(synthetic_size=64, instruction="Answer in \\boxed{}."))

    common = dict(
        use_cpu=True, bf16=False, gradient_checkpointing=False, report_to="none", save_strategy="no",
        num_generations=args.generations, per_device_train_batch_size=args.generations,
        max_completion_length=args.max_completion_length, learning_rate=1e-3, max_steps=args.steps, logging_steps=1,
        seed=0, dataloader_num_workers=0, answer_extractor="last_number", disable_tqdm=True,
        retrace_anchors=[args.anchor], retrace_samples_per_anchor=args.samples, retrace_visual_perturbation=True,
    )
    variants = {
        "base": dict(reward_funcs=["soft_frequency"]),
        "csrs new_turn": dict(reward_funcs=["retrace_frequency"], retrace_mode="new_turn"),
        "csrs continuation": dict(reward_funcs=["retrace_frequency"], retrace_mode="continuation"),
        # memory-bounded: re-inference calls no larger than the rollout batch (G rows)
        "csrs new_turn, G-row calls": dict(reward_funcs=["retrace_frequency"], retrace_mode="new_turn",
                                           retrace_generation_batch_size=args.generations),
    }
    step_times = {name: [] for name in variants}
    shares = {name: [] for name in variants}
    token_ratios = {name: [] for name in variants}
    for round_index in range(args.rounds):
        for name, overrides in variants.items():
            config = SelfEvolveConfig(output_dir=os.path.join(work, name.replace(" ", "-")), **common, **overrides)
            trainer = SelfEvolveGRPOTrainer(model=model_dir, args=config, train_dataset=dataset, processing_class=processor)
            trainer.remove_callback(PrinterCallback)
            trainer.train()
            steps = [entry for entry in trainer.state.log_history if "step_time" in entry]
            step_times[name] += [entry["step_time"] for entry in steps[1:]]  # the first step warms up
            shares[name] += [entry["retrace/time_share"] for entry in steps[1:] if "retrace/time_share" in entry]
            token_ratios[name] += [entry["retrace/tokens_per_completion"] / entry["completions/mean_length"]
                                   for entry in steps[1:] if "retrace/tokens_per_completion" in entry]
        print(f"round {round_index + 1}/{args.rounds}: "
              + ", ".join(f"{n} {statistics.median(t):.3f}s" for n, t in step_times.items()), flush=True)

    base = statistics.median(step_times["base"])
    print(f"\nTiny Qwen2.5-VL on CPU, G = {args.generations}, K = {args.samples}, anchor {args.anchor}, "
          f"max_completion_length {args.max_completion_length}, VSP on; {args.rounds} interleaved rounds x "
          f"{args.steps - 1} timed steps per variant (median step_time).")
    print(f"{'variant':<27} {'step s':>7} {'extra/base (side by side)':>26} {'re-inference share s':>21} "
          f"{'s/(1-s)':>8} {'re-inference tokens / rollout tokens':>37}")
    for name, times in step_times.items():
        line = f"{name:<27} {statistics.median(times):>7.3f}"
        if name != "base":
            share = statistics.median(shares[name])
            line += (f" {(statistics.median(times) - base) / base:>26.2f} {share:>21.2f} {share / (1 - share):>8.2f}"
                     f" {statistics.median(token_ratios[name]):>37.2f}")
        print(line)


if __name__ == "__main__":
    main()
