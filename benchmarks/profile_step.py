"""Where the time of a tiny training step goes.

Trains `SelfEvolveGRPOTrainer` on the tiny Qwen2.5-VL with the embedded recipe's method (soft_frequency with a hard
threshold + format reward, `lse` advantages, last-number answers; 16 completions of up to 24 tokens a step) under
cProfile, after one untimed step, and prints the share of the step in each part: generation, our reward computation
(gather, every reward function, diagnostics, broadcast), TRL's whole preparation of the batch, our advantage
replacement, the loss forward, backward, and the optimizer. (With beta = 0 and one iteration per generation, TRL
computes no reference or old log-probs.) `--top N` also prints cProfile's top N functions by own time.

    OMP_NUM_THREADS=1 python benchmarks/profile_step.py             # --steps 5 by default

The figures are printed last.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import tempfile

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the package here, if not installed


os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# part -> (file suffix, function name) whose cumulative time is the part's; in the order they run in a step.
PARTS = {
    "generation (transformers generate)": ("trl/trainer/grpo_trainer.py", "_generate"),
    "our rewards: _calculate_rewards (all)": ("self_evolve_trl/training/trainer.py", "_calculate_rewards"),
    "  of which reward functions + diagnostics": ("self_evolve_trl/training/trainer.py", "_score_groups"),
    "  of which diagnostics": ("self_evolve_trl/training/diagnostics.py", "group_diagnostics"),
    "  of which gather_object": ("accelerate/utils/operations.py", "gather_object"),
    "  of which broadcast_object_list": ("accelerate/utils/operations.py", "broadcast_object_list"),
    "TRL _generate_and_score_completions (all)": ("trl/trainer/grpo_trainer.py", "_generate_and_score_completions"),
    "our advantage replacement (after super())": ("self_evolve_trl/training/trainer.py", "_generate_and_score_completions"),
    "loss forward (_compute_loss)": ("trl/trainer/grpo_trainer.py", "_compute_loss"),
    "backward": ("accelerate/accelerator.py", "backward"),
    "optimizer step": ("torch/optim/optimizer.py", "wrapper"),
    "training_step (all of the above but optimizer)": ("transformers/trainer.py", "training_step"),
}


def build_trainer(steps: int, output_dir: str):
    from transformers import AutoProcessor, PrinterCallback

    from self_evolve_trl.data.arguments import DataArguments

    from self_evolve_trl.training.config import SelfEvolveConfig
    from self_evolve_trl.data import load_training_dataset
    from self_evolve_trl.data.tiny_model import build_tiny_qwen25vl
    from self_evolve_trl.training.trainer import SelfEvolveGRPOTrainer

    model_dir = build_tiny_qwen25vl(os.path.join(output_dir, "tiny"))
    processor = AutoProcessor.from_pretrained(model_dir, padding_side="left")
    dataset = load_training_dataset(DataArguments(synthetic_size=64, instruction="Answer in \\boxed{}."))
    config = SelfEvolveConfig(
        output_dir=os.path.join(output_dir, "out"), use_cpu=True, bf16=False, gradient_checkpointing=False,
        report_to="none", num_generations=8, per_device_train_batch_size=16, max_completion_length=24,
        temperature=1.0, learning_rate=1e-3, beta=0.0, logging_steps=1, save_strategy="no", seed=0,
        dataloader_num_workers=0, disable_tqdm=True, max_steps=steps,
        reward_funcs=["soft_frequency", "format"],
        reward_kwargs={"soft_frequency": {"hard_threshold": 0.85}, "format": {"pattern": ".*\\\\boxed\\{.*\\}.*"}},
        advantage="lse", answer_extractor="last_number",
    )
    trainer = SelfEvolveGRPOTrainer(model=model_dir, args=config, train_dataset=dataset, processing_class=processor)
    trainer.remove_callback(PrinterCallback)
    return trainer


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=5, help="profiled steps (after one untimed step)")
    parser.add_argument("--top", type=int, default=0, help="also print cProfile's top N functions by own time")
    parser.add_argument("--output", help="write the raw cProfile stats here (for snakeviz, pstats, ...)")
    args = parser.parse_args()

    import torch
    from transformers import TrainerCallback

    torch.set_num_threads(1)
    workdir = tempfile.mkdtemp(prefix="profile-step-")
    trainer = build_trainer(args.steps + 1, workdir)
    profiler = cProfile.Profile()

    class ProfileAfterFirstStep(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 1:
                profiler.enable()

        def on_train_end(self, args, state, control, **kwargs):
            profiler.disable()

    trainer.add_callback(ProfileAfterFirstStep())
    trainer.train()
    if args.output:
        profiler.dump_stats(args.output)

    stats = pstats.Stats(profiler)
    cumulative = {}
    for (filename, _, name), (_, _, _, cumtime, callers) in stats.stats.items():
        for part, (suffix, function) in PARTS.items():
            if name == function and filename.endswith(suffix):
                # recursive or nested entries of one function: keep the outermost (largest) cumulative time
                cumulative[part] = max(cumulative.get(part, 0.0), cumtime)
    total = stats.total_tt
    if "our advantage replacement (after super())" in cumulative:
        cumulative["our advantage replacement (after super())"] -= cumulative.get(
            "TRL _generate_and_score_completions (all)", 0.0
        )

    if args.top:
        stats.sort_stats("tottime").print_stats(args.top)
    print(f"figures ({args.steps} profiled steps of 16 completions, <= 24 tokens; seconds per step, share of the "
          "profiled time):")
    print(f"  {'whole step':<48} {total / args.steps:7.4f} s  100.0%")
    for part in PARTS:
        seconds = cumulative.get(part, 0.0)
        print(f"  {part:<48} {seconds / args.steps:7.4f} s  {100 * seconds / total:5.1f}%")


if __name__ == "__main__":
    main()
