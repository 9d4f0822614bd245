"""Trainer overhead: step time of `SelfEvolveGRPOTrainer` against stock TRL `GRPOTrainer` (issue 8).

Three trainers on the same tiny Qwen2.5-VL (`self_evolve_trl.tiny`), the same synthetic data, generation settings
and seed:

- `stock`: TRL's `GRPOTrainer` with a trivial reward (completion length mod 3);
- `soft_frequency+lse`: ours, soft-frequency consistency reward and log-sum-exp advantages;
- `majority_vote+grpo`: ours, majority vote with TRL's GRPO advantages.

The learning rate is 0, so that every trainer generates exactly the same completions at every step (the same
model, the same sampling RNG): the step times then differ only by what the trainers do besides generation and the
loss, which is what is measured. Runs are interleaved (stock, ours, ours, stock, ...; the order rotates each
round) because the machine is shared; each run trains `--steps` steps, the first `--warmup` are dropped, and the
ratio of a round is median(ours) / median(stock) of that round, for the process's CPU time (what other users of a
shared machine disturb least) and for wall time. Printed last: the median ratio over rounds and its range. Goal: at
most 1.05.

    OMP_NUM_THREADS=1 python benchmarks/overhead.py            # --rounds 10 --steps 6 by default
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time


os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

VARIANTS = ("stock", "soft_frequency+lse", "majority_vote+grpo")

COMMON = dict(
    use_cpu=True,
    bf16=False,
    gradient_checkpointing=False,
    report_to="none",
    num_generations=8,
    per_device_train_batch_size=16,
    max_completion_length=24,
    temperature=1.0,
    learning_rate=0.0,
    beta=0.0,
    logging_steps=1,
    save_strategy="no",
    seed=0,
    dataloader_num_workers=0,
    disable_tqdm=True,
)


def trivial_reward(completions, **kwargs):
    """A reward that costs nothing: the completion's length mod 3."""
    from self_evolve_trl.answers import completion_text

    return [float(len(completion_text(c)) % 3) for c in completions]


def make_trainer(variant: str, model_dir: str, processor, dataset, output_dir: str, steps: int):
    from transformers import PrinterCallback, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from self_evolve_trl.config import SelfEvolveConfig
    from self_evolve_trl.trainer import SelfEvolveGRPOTrainer

    class StepTimer(TrainerCallback):
        """Wall time and CPU time of this process (all its threads) per step; CPU time is what other users of a
        shared machine disturb least."""

        def __init__(self):
            self.times, self.cpu_times = [], []
            self.start = self.cpu_start = None

        def on_step_begin(self, args, state, control, **kwargs):
            self.start, self.cpu_start = time.perf_counter(), time.process_time()

        def on_step_end(self, args, state, control, **kwargs):
            self.times.append(time.perf_counter() - self.start)
            self.cpu_times.append(time.process_time() - self.cpu_start)

    timer = StepTimer()
    common = dict(COMMON, output_dir=output_dir, max_steps=steps)
    if variant == "stock":
        trainer = GRPOTrainer(
            model=model_dir, reward_funcs=[trivial_reward], args=GRPOConfig(**common), train_dataset=dataset,
            processing_class=processor, callbacks=[timer],
        )
    else:
        reward, advantage = variant.split("+")
        config = SelfEvolveConfig(**common, reward_funcs=[reward], advantage=advantage, answer_extractor="last_number")
        trainer = SelfEvolveGRPOTrainer(
            model=model_dir, args=config, train_dataset=dataset, processing_class=processor, callbacks=[timer],
        )
    trainer.remove_callback(PrinterCallback)
    return trainer, timer


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds (each trains every variant once)")
    parser.add_argument("--steps", type=int, default=6, help="training steps per run")
    parser.add_argument("--warmup", type=int, default=1, help="first steps of each run left out of its median")
    parser.add_argument("--dataset-size", type=int, default=64)
    args = parser.parse_args()

    import torch
    from transformers import AutoProcessor

    from self_evolve_trl.config import DataArguments
    from self_evolve_trl.data import load_training_dataset
    from self_evolve_trl.tiny import build_tiny_qwen25vl

    torch.set_num_threads(1)
    workdir = tempfile.mkdtemp(prefix="overhead-")
    model_dir = build_tiny_qwen25vl(os.path.join(workdir, "tiny"))
    processor = AutoProcessor.from_pretrained(model_dir, padding_side="left")
    data_args = DataArguments(synthetic_size=args.dataset_size, instruction="Answer in \\boxed{}.")
    dataset = load_training_dataset(data_args)

    medians = {clock: {variant: [] for variant in VARIANTS} for clock in ("cpu", "wall")}
    lengths_seen: dict[str, list] = {}
    for round_index in range(args.rounds):
        order = VARIANTS[round_index % len(VARIANTS):] + VARIANTS[: round_index % len(VARIANTS)]
        for variant in order:
            output_dir = os.path.join(workdir, variant)
            trainer, timer = make_trainer(variant, model_dir, processor, dataset, output_dir, args.steps)
            trainer.train()
            medians["wall"][variant].append(statistics.median(timer.times[args.warmup:]))
            medians["cpu"][variant].append(statistics.median(timer.cpu_times[args.warmup:]))
            lengths = [entry.get("completions/mean_length") for entry in trainer.state.log_history if "loss" in entry]
            lengths_seen.setdefault(variant, lengths)
            walls = ", ".join(f"{t:.3f}" for t in timer.times)
            print(f"round {round_index}: {variant:<20} median step: cpu {medians['cpu'][variant][-1]:.3f} s, "
                  f"wall {medians['wall'][variant][-1]:.3f} s (wall per step: {walls})", flush=True)
            del trainer

    same = all(lengths_seen[v] == lengths_seen["stock"] for v in VARIANTS)
    print()
    print(f"same completions in every trainer (mean lengths per step): {same} {lengths_seen['stock']}")
    print(f"figures ({args.rounds} interleaved rounds x {args.steps} steps, first {args.warmup} dropped; "
          f"{COMMON['per_device_train_batch_size']} completions of <= {COMMON['max_completion_length']} tokens a step;"
          " "
          "ratio of a round = its median step / stock's; median (min - max) over rounds):")
    for clock in ("cpu", "wall"):
        for variant in VARIANTS:
            print(f"  {clock:<4} {variant:<20} median step {statistics.median(medians[clock][variant]):.3f} s "
                  f"(rounds: {', '.join(f'{m:.3f}' for m in medians[clock][variant])})")
    for clock in ("cpu", "wall"):
        for variant in VARIANTS[1:]:
            ratios = [ours / stock for ours, stock in zip(medians[clock][variant], medians[clock]["stock"])]
            print(f"  {clock:<4} ratio {variant} / stock: {statistics.median(ratios):.3f} "
                  f"({min(ratios):.3f} - {max(ratios):.3f})")


if __name__ == "__main__":
    main()
