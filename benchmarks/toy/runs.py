"""Label-free runs: one (method, seed) from the base through `SelfEvolveGRPOTrainer`, then the held-out evaluation;
several at once in worker processes of one thread each."""

from __future__ import annotations

import json
import os
import re
import time

import torch

from self_evolve_trl.data.synthetic import Board, draw_board

from .data import INSTRUCTION
from .evaluation import evaluate
from .methods import Method


def run_name(method: str, seed: int) -> str:
    """The run's folder under OUTPUT_DIR/runs.

    Example:

    ```python
    >>> run_name("judge_modulated+lse (chance judge)", 2)
    'judge_modulated+lse_chance_judge-seed2'

    ```
    """
    return re.sub(r"[^A-Za-z0-9_+.-]+", "_", method).strip("_") + f"-seed{seed}"


def rl_dataset(boards: list[Board], grid: int):
    import datasets

    from self_evolve_trl.data import prepare_dataset

    rows = [
        {"question": b.question, "image": draw_board(b.cells, grid), "answer": str(b.answer), "uid": f"rl-{i}"}
        for i, b in enumerate(boards)
    ]
    return prepare_dataset(datasets.Dataset.from_list(rows), "question", "image", "answer", INSTRUCTION)


def run_config(args, method: Method, seed: int, output_dir: str):
    from self_evolve_trl.training.config import SelfEvolveConfig

    g = args.num_generations
    return SelfEvolveConfig(
        output_dir=output_dir,
        num_generations=g,
        per_device_train_batch_size=args.prompts_per_step * g,
        gradient_accumulation_steps=1,
        max_completion_length=args.max_completion_length,
        temperature=args.temperature,
        top_p=1.0,
        learning_rate=args.rl_lr,
        lr_scheduler_type="constant",
        beta=args.beta,
        max_steps=args.rl_steps,
        logging_steps=1,
        save_strategy="no",
        seed=seed,
        answer_extractor="boxed",
        answer_match="normalized",
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        dataloader_num_workers=0,
        report_to="none",
        disable_tqdm=True,
        print_summary=False,  # each run's summary.txt is in its run folder; the benchmark prints its own table
        **method.config,
    )


def run_one(job: dict) -> dict:
    """One label-free run (method, seed) from the base, then the held-out evaluation. Runs in a worker process."""
    import transformers

    from self_evolve_trl.training.trainer import SelfEvolveGRPOTrainer

    quiet()
    args, method, seed, splits = job["args"], job["method"], job["seed"], job["splits"]
    run_dir = os.path.join(args.output_dir, "runs", run_name(method.name, seed))
    os.makedirs(run_dir, exist_ok=True)
    processor = transformers.AutoProcessor.from_pretrained(job["base_dir"], padding_side="left")
    start = time.time()
    trainer = SelfEvolveGRPOTrainer(
        model=job["base_dir"],
        args=run_config(args, method, seed, run_dir),
        train_dataset=rl_dataset(splits.rl, args.grid),
        processing_class=processor,
    )
    trainer.remove_callback(transformers.PrinterCallback)
    trainer.train()
    train_s = time.time() - start
    history = trainer.state.log_history
    with open(os.path.join(run_dir, "log_history.json"), "w") as f:
        json.dump(history, f)
    heldout = evaluate(trainer.model, processor, splits.test, args.grid, args.eval_samples, args.max_completion_length,
                       args.temperature, args.eval_batch_size, seed=10_000 + seed)
    return {"method": method.name, "seed": seed, "heldout": heldout, "train_s": train_s,
            "eval_s": time.time() - start - train_s, "history": history}


def slowest_first(jobs: list[dict]) -> list[dict]:
    """The jobs in the order to start them: the costliest methods first (a stable sort, so seeds keep their order).

    Example:

    ```python
    >>> from benchmarks.toy.methods import Method
    >>> jobs = [{"method": Method("a", "r", {}), "seed": 0}, {"method": Method("b", "r", {}, cost=2.0), "seed": 0}]
    >>> [job["method"].name for job in slowest_first(jobs)]
    ['b', 'a']

    ```
    """
    return sorted(jobs, key=lambda job: -job["method"].cost)


def run_all(jobs: list[dict], workers: int, log=print) -> list[dict]:
    """Every job, in `workers` spawned processes (slowest first), or in this one for 1 (in the jobs' order); the
    results in the jobs' order."""
    results = []
    if workers <= 1:
        for job in jobs:
            results.append(run_one(job))
            log(run_line(results[-1]))
        return results
    import concurrent.futures
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context, initializer=worker_init) as pool:
        futures = [pool.submit(run_one, job) for job in slowest_first(jobs)]
        for future in concurrent.futures.as_completed(futures):
            results.append(future.result())
            log(run_line(results[-1]))
    order = {(j["method"].name, j["seed"]): i for i, j in enumerate(jobs)}
    return sorted(results, key=lambda r: order[(r["method"], r["seed"])])


def worker_init():
    os.environ["OMP_NUM_THREADS"] = "1"
    quiet()


def quiet():
    import datasets
    import transformers

    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()


def run_line(r: dict) -> str:
    h = r["heldout"]
    return (f"  {r['method']:<34} seed {r['seed']}: greedy {h['greedy_pass1']:.3f}  sampled {h['sampled_pass1']:.3f}  "
            f"maj@k {h['maj_at_k']:.3f}  ({r['train_s']:.0f}s train, {r['eval_s']:.0f}s eval)")
