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

import argparse
import logging
import os
import statistics
import tempfile
import warnings


def build_trainer(model_dir, processor, dataset, output_dir, args, vote_samples):
    from transformers import PrinterCallback

    from self_evolve_trl.training.config import SelfEvolveConfig
    from self_evolve_trl.training.trainer import SelfEvolveGRPOTrainer

    config = SelfEvolveConfig(
        output_dir=output_dir, use_cpu=True, bf16=False, gradient_checkpointing=False, report_to="none",
        save_strategy="no", num_generations=args.generations, per_device_train_batch_size=args.generations,
        max_completion_length=args.max_completion_length, learning_rate=1e-3, max_steps=args.steps, logging_steps=1,
        seed=0, dataloader_num_workers=0, answer_extractor="last_number", disable_tqdm=True,
        reward_funcs=["ttrl_vote"], vote_samples=vote_samples,
    )
    trainer = SelfEvolveGRPOTrainer(model=model_dir, args=config, train_dataset=dataset, processing_class=processor)
    trainer.remove_callback(PrinterCallback)
    return trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (each runs both variants once)")
    parser.add_argument("--steps", type=int, default=3, help="training steps per variant per round")
    parser.add_argument("--generations", type=int, default=8, help="G (and M in the second variant)")
    parser.add_argument("--max_completion_length", type=int, default=24)
    args = parser.parse_args()
    if args.steps < 2:
        parser.error("--steps must be at least 2: the first step of each run warms up and is not timed")

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    warnings.filterwarnings("ignore")
    import transformers
    from transformers import AutoProcessor

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    logging.disable(logging.WARNING)

    from self_evolve_trl.data import load_training_dataset
    from self_evolve_trl.data.arguments import DataArguments
    from self_evolve_trl.data.tiny_model import build_tiny_qwen25vl

    work = tempfile.mkdtemp(prefix="ttrl-cost-")
    model_dir = build_tiny_qwen25vl(os.path.join(work, "tiny"))
    processor = AutoProcessor.from_pretrained(model_dir, padding_side="left")
    dataset = load_training_dataset(DataArguments(synthetic_size=64, instruction="Answer in \\boxed{}."))
    variants = {"M = 0": 0, f"M = G = {args.generations}": args.generations}
    step_times = {name: [] for name in variants}
    shares = []
    for round_index in range(args.rounds):
        for name, m in variants.items():
            trainer = build_trainer(model_dir, processor, dataset, os.path.join(work, f"m{m}"), args, m)
            trainer.train()
            steps = [entry for entry in trainer.state.log_history if "step_time" in entry][1:]  # the first warms up
            step_times[name] += [entry["step_time"] for entry in steps]
            shares += [entry["ttrl/seconds"] / entry["step_time"] for entry in steps if "ttrl/seconds" in entry]
        print(f"round {round_index + 1}/{args.rounds}: "
              + ", ".join(f"{n} {statistics.median(t):.3f}s" for n, t in step_times.items()), flush=True)

    base, voted = (statistics.median(times) for times in step_times.values())
    print(f"\nTiny Qwen2.5-VL on CPU, G = {args.generations}, max_completion_length {args.max_completion_length}; "
          f"{args.rounds} interleaved rounds x {args.steps - 1} timed steps per variant (median step_time).")
    print(f"M = 0: {base:.3f} s   M = G: {voted:.3f} s   ratio (side by side): {voted / base:.2f}   "
          f"extra-vote share of the M = G step: {statistics.median(shares):.2f}")


if __name__ == "__main__":
    main()
