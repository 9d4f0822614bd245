"""Trainer overhead: step time of `SelfEvolveGRPOTrainer` against stock TRL `GRPOTrainer`.

Three trainers on the same tiny Qwen2.5-VL (`self_evolve_trl.data.tiny`), the same synthetic data, generation settings
and seed:

- `stock`: TRL's `GRPOTrainer` with a trivial reward (completion length mod 3);
- `soft_frequency+lse`: ours, soft-frequency consistency reward and log-sum-exp advantages;
- `majority_vote+grpo`: ours, majority vote with TRL's GRPO advantages.

All three live in one process and take turns, step by step (the order rotates every step), because the machine is
shared and its speed drifts: a step of ours is compared with the stock step taken right next to it. A step is what
`Trainer.train` does per optimisation step: `training_step` (generation, rewards, advantages, loss, backward), the
optimizer and scheduler steps, and `log`. Before each step the RNG is seeded with the step number, and the learning
rate is 0, so all three generate exactly the same completions at every step (checked): the step times then differ
only by what the trainers do besides generation and the loss. Each step is timed by the process's CPU time (what
other users of a shared machine disturb least) and by wall time; the first `--warmup` steps are dropped. The parts
where the trainers differ (reward computation, advantage replacement) are also timed directly. Printed last: per
variant, the median over steps of (our step / the stock step next to it), with the quartiles. Goal: at most 1.05.

    OMP_NUM_THREADS=1 python benchmarks/overhead.py            # --steps 40 --warmup 3 by default
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the package here, if not installed


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


# (variant, part) -> wall seconds per call of the parts that differ between the trainers (see `instrument`)
PART_TIMES: dict[tuple[str, str], list[float]] = defaultdict(list)


def instrument():
    """Time the parts where the trainers differ, directly: the reward computation (`_calculate_rewards`: stock TRL's,
    or ours with its gather, diagnostics and broadcast) and, for ours, what `_generate_and_score_completions` does
    after TRL's (the advantage replacement)."""
    from trl import GRPOTrainer

    from self_evolve_trl.training.trainer import SelfEvolveGRPOTrainer

    def timed(cls, name, part):
        original = cls.__dict__[name]

        def wrapper(self, *args, **kwargs):
            start = time.perf_counter()
            try:
                return original(self, *args, **kwargs)
            finally:
                PART_TIMES[self.benchmark_variant, part].append(time.perf_counter() - start)

        setattr(cls, name, wrapper)

    timed(GRPOTrainer, "_calculate_rewards", "rewards")
    timed(SelfEvolveGRPOTrainer, "_calculate_rewards", "rewards")
    timed(GRPOTrainer, "_generate_and_score_completions", "trl_batch")
    timed(SelfEvolveGRPOTrainer, "_generate_and_score_completions", "our_batch")


def trivial_reward(completions, **kwargs):
    """A reward that costs nothing: the completion's length mod 3."""
    from self_evolve_trl.answers import completion_text

    return [float(len(completion_text(c)) % 3) for c in completions]


def make_trainer(variant: str, model_dir: str, processor, dataset, output_dir: str, steps: int):
    from transformers import PrinterCallback
    from trl import GRPOConfig, GRPOTrainer

    from self_evolve_trl.training.config import SelfEvolveConfig
    from self_evolve_trl.training.trainer import SelfEvolveGRPOTrainer

    common = dict(COMMON, output_dir=output_dir, max_steps=steps)
    if variant == "stock":
        trainer = GRPOTrainer(
            model=model_dir, reward_funcs=[trivial_reward], args=GRPOConfig(**common), train_dataset=dataset,
            processing_class=processor,
        )
    else:
        reward, advantage = variant.split("+")
        config = SelfEvolveConfig(**common, reward_funcs=[reward], advantage=advantage, answer_extractor="last_number")
        trainer = SelfEvolveGRPOTrainer(
            model=model_dir, args=config, train_dataset=dataset, processing_class=processor
        )
    trainer.remove_callback(PrinterCallback)
    trainer.benchmark_variant = variant
    trainer.model.train()
    trainer.create_optimizer_and_scheduler(num_training_steps=steps)
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train's loop
    return trainer


def train_step(trainer, batch) -> tuple[float, float, list]:
    """One optimisation step as `Trainer.train` takes it; returns (cpu seconds, wall seconds, completion ids)."""
    cpu, wall = time.process_time(), time.perf_counter()
    loss = trainer.training_step(trainer.model, batch, None)
    trainer.optimizer.step()
    trainer.lr_scheduler.step()
    trainer.model.zero_grad()
    trainer.state.global_step += 1
    trainer.log({"loss": loss.item()})
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    ids = trainer._buffered_inputs[0]["completion_ids"].tolist()
    return cpu, wall, ids


def quartiles(values: list[float]) -> tuple[float, float, float]:
    q1, median, q3 = statistics.quantiles(values, n=4)
    return q1, median, q3


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40, help="measured steps of each trainer")
    parser.add_argument("--warmup", type=int, default=3, help="steps taken first and left out")
    parser.add_argument("--dataset-size", type=int, default=64)
    args = parser.parse_args()

    import torch
    from transformers import AutoProcessor

    from self_evolve_trl.data.arguments import DataArguments
    from self_evolve_trl.data import load_training_dataset
    from self_evolve_trl.data.tiny_model import build_tiny_qwen25vl

    torch.set_num_threads(1)
    workdir = tempfile.mkdtemp(prefix="overhead-")
    model_dir = build_tiny_qwen25vl(os.path.join(workdir, "tiny"))
    processor = AutoProcessor.from_pretrained(model_dir, padding_side="left")
    data_args = DataArguments(synthetic_size=args.dataset_size, instruction="Answer in \\boxed{}.")
    dataset = load_training_dataset(data_args)

    total = args.warmup + args.steps
    instrument()
    trainers = {v: make_trainer(v, model_dir, processor, dataset, os.path.join(workdir, v), total) for v in VARIANTS}
    batches = {v: iter(trainers[v].get_train_dataloader()) for v in VARIANTS}
    times = {clock: {v: [] for v in VARIANTS} for clock in ("cpu", "wall")}
    same_completions = True
    for step in range(total):
        order = VARIANTS[step % len(VARIANTS):] + VARIANTS[: step % len(VARIANTS)]
        completions = {}
        for variant in order:
            try:
                batch = next(batches[variant])
            except StopIteration:
                batches[variant] = iter(trainers[variant].get_train_dataloader())
                batch = next(batches[variant])
            torch.manual_seed(1000 + step)
            cpu, wall, completions[variant] = train_step(trainers[variant], batch)
            if step >= args.warmup:
                times["cpu"][variant].append(cpu)
                times["wall"][variant].append(wall)
        same_completions &= all(completions[v] == completions["stock"] for v in VARIANTS)
        if step == args.warmup - 1:
            PART_TIMES.clear()
        if step >= args.warmup:
            print(f"step {step}: " + ", ".join(
                f"{v} cpu {times['cpu'][v][-1]:.3f} s wall {times['wall'][v][-1]:.3f} s" for v in VARIANTS
            ), flush=True)

    print()
    print(f"same completions in every trainer at every step: {same_completions}")
    print(f"figures ({args.steps} steps of each trainer, interleaved step by step after {args.warmup} warm-up steps; "
          f"{COMMON['per_device_train_batch_size']} completions of <= {COMMON['max_completion_length']} tokens a "
          "step; seconds, and ratios of each step to the stock step next to it; median [quartiles]):")
    for clock in ("cpu", "wall"):
        for variant in VARIANTS:
            q1, median, q3 = quartiles(times[clock][variant])
            print(f"  {clock:<4} step {variant:<20} {median:.3f} s  [{q1:.3f} - {q3:.3f}]")
    for variant in VARIANTS:
        rewards = statistics.median(PART_TIMES[variant, "rewards"]) * 1000
        line = f"  wall reward computation of {variant:<20} {rewards:6.2f} ms a step"
        if variant != "stock":
            pairs = zip(PART_TIMES[variant, "our_batch"], PART_TIMES[variant, "trl_batch"])
            after = [ours - trl for ours, trl in pairs]
            line += f"; advantage replacement {statistics.median(after) * 1000:5.2f} ms a step"
        print(line)
    for clock in ("cpu", "wall"):
        for variant in VARIANTS[1:]:
            ratios = [ours / stock for ours, stock in zip(times[clock][variant], times[clock]["stock"])]
            q1, median, q3 = quartiles(ratios)
            print(f"  {clock:<4} ratio {variant} / stock: {median:.3f}  [{q1:.3f} - {q3:.3f}]")


if __name__ == "__main__":
    main()
