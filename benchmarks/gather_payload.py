"""What one process sends through `gather_object` in `_calculate_rewards`, at a realistic size.

`gather_object` pickles each process's rows and every process unpickles the rows of all processes, so the payload's
size and (un)pickling time are paid on every step by every process. This calls the real
`SelfEvolveGRPOTrainer._calculate_rewards` (tiny model; no generation) on `--completions` completions of `--tokens`
token ids and 4 characters a token, records the rows handed to `gather_object`, and times `pickle.dumps` and
`pickle.loads` of them:

- `soft_frequency + format`: no reward reads token ids or prompts, so neither is gathered;
- `+ a reward reading completion_ids`: the ids travel packed (`array('i')`, 4 bytes an id);
- `ids as Python lists (before packing)`: the same rows with the ids as lists of ints and the prompts included,
  as `_calculate_rewards` gathered them before.

    OMP_NUM_THREADS=1 python benchmarks/gather_payload.py        # --completions 512 --tokens 2048

The figures are printed last.
"""

from __future__ import annotations

import argparse
import os
import pickle
import random
import statistics
import sys
import tempfile
import time

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the package here, if not installed


os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def reads_ids(completions, completion_ids):
    return [float(len(ids)) for ids in completion_ids]


def gathered_rows(reward_funcs, n: int, tokens: int, workdir: str) -> list[dict]:
    from transformers import AutoProcessor

    import self_evolve_trl.training.trainer as trainer_module
    from self_evolve_trl.data.arguments import DataArguments
    from self_evolve_trl.training.config import SelfEvolveConfig
    from self_evolve_trl.data import load_training_dataset
    from self_evolve_trl.data.tiny_model import build_tiny_qwen25vl

    model_dir = build_tiny_qwen25vl(os.path.join(workdir, "tiny"))
    processor = AutoProcessor.from_pretrained(model_dir, padding_side="left")
    dataset = load_training_dataset(DataArguments(synthetic_size=n // 8, instruction="Answer in \\boxed{}."))
    config = SelfEvolveConfig(
        output_dir=os.path.join(workdir, "out"), use_cpu=True, bf16=False, report_to="none", num_generations=8,
        per_device_train_batch_size=8, max_completion_length=tokens, save_strategy="no", disable_tqdm=True,
    )
    trainer = trainer_module.SelfEvolveGRPOTrainer(
        model=model_dir, args=config, train_dataset=dataset, processing_class=processor, reward_funcs=reward_funcs,
    )
    trainer.model.train()
    rng = random.Random(0)
    inputs = [dataset[i // 8] for i in range(n)]
    prompts = [row["prompt"] for row in inputs]
    words = ["the", "angle", "is", "40", "so", "x", "=", "\\frac{1}{2}", "triangle", "ABC"]
    completions = [
        [{"role": "assistant", "content": "<think>" + " ".join(rng.choice(words) for _ in range(tokens * 4 // 5))
          + f"</think> \\boxed{{{rng.randint(1, 5)}}}"}]
        for _ in range(n)
    ]
    completion_ids = [[rng.randrange(151_000) for _ in range(tokens)] for _ in range(n)]
    recorded = []
    original = trainer_module.gather_object
    trainer_module.gather_object = lambda rows: recorded.append(rows) or original(rows)
    try:
        trainer._calculate_rewards(inputs, prompts, completions, completion_ids)
    finally:
        trainer_module.gather_object = original
    return recorded[0], prompts, completion_ids


def pickle_times(rows, repeats: int = 3) -> tuple[float, float, float]:
    dumps, loads = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        payload = pickle.dumps(rows)
        dumps.append(time.perf_counter() - start)
        start = time.perf_counter()
        pickle.loads(payload)
        loads.append(time.perf_counter() - start)
    return len(payload) / 1e6, statistics.median(dumps), statistics.median(loads)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--completions", type=int, default=512, help="completions on one process")
    parser.add_argument("--tokens", type=int, default=2048, help="token ids per completion")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="gather-payload-")

    plain, prompts, ids = gathered_rows(["soft_frequency", "format"], args.completions, args.tokens, workdir)
    packed, _, _ = gathered_rows(["soft_frequency", reads_ids], args.completions, args.tokens, workdir)
    from self_evolve_trl.training.group_rewards import strip_images

    before = [dict(row, completion_ids=list(i), prompt=strip_images(p)) for row, i, p in zip(plain, ids, prompts)]
    print(f"figures ({args.completions} completions of {args.tokens} token ids on one process; payload MB, "
          "pickle.dumps s, pickle.loads s, median of 3):")
    for name, rows in [
        ("soft_frequency + format", plain),
        ("+ a reward reading completion_ids", packed),
        ("ids as Python lists (before packing)", before),
    ]:
        size, dumps, loads = pickle_times(rows)
        print(f"  {name:<38} {size:7.2f} MB   dumps {dumps:.3f} s   loads {loads:.3f} s")


if __name__ == "__main__":
    main()
