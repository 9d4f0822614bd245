"""What the step-cost benchmarks (`retrace_cost.py`, `certainty_cost.py`, `ttrl_cost.py`) share: their options, the
tiny Qwen2.5-VL with its processor and synthetic data, and interleaved rounds of short training runs, one per variant,
that collect TRL's per-step log entries (`step_time` and the method's own timings).

Not a benchmark of its own: the scripts import it (`python benchmarks/X.py` puts this folder on the path).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import warnings


def cost_parser(description: str) -> argparse.ArgumentParser:
    """The options every step-cost benchmark takes; a script adds its own."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (each runs every variant once)")
    parser.add_argument("--steps", type=int, default=3, help="training steps per variant per round")
    parser.add_argument("--generations", type=int, default=8, help="G")
    parser.add_argument("--max_completion_length", type=int, default=24)
    return parser


def parse_cost_args(parser: argparse.ArgumentParser) -> argparse.Namespace:
    args = parser.parse_args()
    if args.steps < 2:
        parser.error("--steps must be at least 2: the first step of each run warms up and is not timed")
    return args


def tiny_setup(prefix: str):
    """(work folder, tiny model folder, its processor, 64 synthetic rows), with transformers quiet."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    warnings.filterwarnings("ignore")
    import transformers  # imported here: the scripts' --help stays fast
    from transformers import AutoProcessor

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    logging.disable(logging.WARNING)

    from self_evolve_trl.data import load_training_dataset
    from self_evolve_trl.data.arguments import DataArguments
    from self_evolve_trl.data.tiny_model import build_tiny_qwen25vl

    work = tempfile.mkdtemp(prefix=prefix)
    model_dir = build_tiny_qwen25vl(os.path.join(work, "tiny"))
    processor = AutoProcessor.from_pretrained(model_dir, padding_side="left")
    dataset = load_training_dataset(DataArguments(synthetic_size=64, instruction="Answer in \\boxed{}."))
    return work, model_dir, processor, dataset


def common_config(args: argparse.Namespace) -> dict:
    """The config every variant shares: CPU, one group per step, the options' G and completion length."""
    return dict(
        use_cpu=True, bf16=False, gradient_checkpointing=False, report_to="none", save_strategy="no",
        num_generations=args.generations, per_device_train_batch_size=args.generations,
        max_completion_length=args.max_completion_length, learning_rate=1e-3, max_steps=args.steps, logging_steps=1,
        seed=0, dataloader_num_workers=0, answer_extractor="last_number", disable_tqdm=True,
    )


def run_rounds(args, setup, common: dict, variants: dict[str, dict]) -> dict[str, list[dict]]:
    """Train every variant (`common` config plus its overrides) once per round, interleaved; the timed log entries
    of each (those with `step_time`, the first step of every run left out: it warms up). Prints each round's
    medians."""
    from transformers import PrinterCallback

    from self_evolve_trl.training.config import SelfEvolveConfig
    from self_evolve_trl.training.trainer import SelfEvolveGRPOTrainer

    work, model_dir, processor, dataset = setup
    entries: dict[str, list[dict]] = {name: [] for name in variants}
    for round_index in range(args.rounds):
        for name, overrides in variants.items():
            output_dir = os.path.join(work, name.replace(" ", "-").replace(",", ""))
            config = SelfEvolveConfig(output_dir=output_dir, **common, **overrides)
            trainer = SelfEvolveGRPOTrainer(model=model_dir, args=config, train_dataset=dataset,
                                            processing_class=processor)
            trainer.remove_callback(PrinterCallback)
            trainer.train()
            entries[name] += [entry for entry in trainer.state.log_history if "step_time" in entry][1:]
        print(f"round {round_index + 1}/{args.rounds}: "
              + ", ".join(f"{n} {median_step(e):.3f}s" for n, e in entries.items()), flush=True)
    return entries


def median_step(entries: list[dict]) -> float:
    return statistics.median(entry["step_time"] for entry in entries)
