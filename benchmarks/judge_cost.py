"""The judge's cost per training step relative to the actor's generation, on the tiny Qwen2.5-VL (CPU).

One trainer with the `judge_modulated` reward runs training steps; in every step the actor generates the G
completions (TRL's `_generate_single_turn`) and then the judge judges them (the `judge_scores` provider), so the two
are timed side by side, step after step, on the same machine load. Printed last: the judge's time as a ratio of the
actor's generation time (median over steps, and total over total), with the tokens each one reads and writes.

The released Self-Judge setting has the judge write at most half as many tokens as the actor (1024 vs 2048); the
defaults keep that ratio (actor 64, judge 32 tokens). The tiny model rarely stops early, so both write about their
caps. Its tokenizer is byte-level: the judge prompt (rubric + problem + completion) is ~4x longer in tokens here than
with the real Qwen2.5 tokenizer, which makes the judge's prefill relatively more expensive than on a real model.

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/judge_cost.py [--steps 6 --backend reference]
    # an OpenAI-compatible judge server (e.g. `transformers serve` of the same tiny model):
    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/judge_cost.py --backend openai \\
        --judge_base_url http://127.0.0.1:8011/v1 --judge_model /path/to/tiny-model --model_dir /path/to/tiny-model
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
import warnings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6, help="training steps measured (after --warmup)")
    parser.add_argument("--warmup", type=int, default=1, help="steps run first and not measured")
    parser.add_argument("--generations", type=int, default=8, help="G, completions per prompt (one prompt a step)")
    parser.add_argument("--max_completion_length", type=int, default=64, help="actor tokens per completion")
    parser.add_argument("--judge_max_tokens", type=int, default=32, help="judge tokens per judgement")
    parser.add_argument("--judge_repeats", type=int, default=1)
    parser.add_argument("--judge_prompt_template", default=None, help="default: the packaged rubric")
    parser.add_argument("--backend", choices=["reference", "openai"], default="reference")
    parser.add_argument("--judge_base_url", default=None)
    parser.add_argument("--judge_model", default=None)
    parser.add_argument("--model_dir", default=None, help="the tiny model (default: built into a temporary folder)")
    args = parser.parse_args()

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

    work = tempfile.mkdtemp(prefix="judge-cost-")
    model_dir = args.model_dir or build_tiny_qwen25vl(os.path.join(work, "tiny"))
    processor = AutoProcessor.from_pretrained(model_dir, padding_side="left")
    dataset = load_training_dataset(DataArguments(synthetic_size=64, instruction="Answer in \\boxed{}."))
    config = SelfEvolveConfig(
        output_dir=os.path.join(work, "out"), use_cpu=True, bf16=False, gradient_checkpointing=False,
        report_to="none", save_strategy="no", disable_tqdm=True, seed=0, dataloader_num_workers=0,
        num_generations=args.generations, per_device_train_batch_size=args.generations,
        max_completion_length=args.max_completion_length, learning_rate=1e-3, logging_steps=1,
        max_steps=args.warmup + args.steps, answer_extractor="last_number",
        reward_funcs=["judge_modulated"], reward_kwargs={"judge_modulated": {"format_pattern": None}},
        judge_backend=args.backend, judge_base_url=args.judge_base_url, judge_model=args.judge_model,
        judge_max_tokens=args.judge_max_tokens, judge_repeats=args.judge_repeats, judge_timeout=600,
        judge_prompt_template=args.judge_prompt_template,
        judge_max_parse_failure_rate=None,  # the tiny model's random weights never write a score: time it anyway
    )
    trainer = SelfEvolveGRPOTrainer(model=model_dir, args=config, train_dataset=dataset, processing_class=processor)
    trainer.remove_callback(PrinterCallback)
    provider = trainer.reward_input_providers["judge_scores"]
    tokenizer = processor.tokenizer

    actor_s, judge_s, actor_in, actor_out, judge_in, judge_out = [], [], [], [], [], []
    generate, judge = trainer._generate_single_turn, provider.backend.judge

    def timed_generate(prompt_ids, *rest, **kwargs):
        start = time.perf_counter()
        completion_ids, logprobs = generate(prompt_ids, *rest, **kwargs)
        actor_s.append(time.perf_counter() - start)
        actor_in.append(sum(len(p) for p in prompt_ids))
        actor_out.append(sum(len(c) for c in completion_ids))
        return completion_ids, logprobs

    def timed_judge(requests, seeds=None):
        start = time.perf_counter()
        outputs = judge(requests, seeds)
        judge_s.append(time.perf_counter() - start)
        judge_in.append(sum(_judge_prompt_tokens(processor, r) for r in requests))
        judge_out.append(sum(len(tokenizer(o.text or "")["input_ids"]) for o in outputs))
        return outputs

    trainer._generate_single_turn = timed_generate
    provider.backend.judge = timed_judge
    trainer.train()

    keep = slice(args.warmup, None)
    actor_s, judge_s = actor_s[keep], judge_s[keep]
    actor_in, actor_out, judge_in, judge_out = actor_in[keep], actor_out[keep], judge_in[keep], judge_out[keep]
    ratios = [j / a for j, a in zip(judge_s, actor_s)]
    print(f"backend {args.backend} ({provider.backend.describe()}), template {provider.template.path}; "
          f"G = {args.generations}, actor {args.max_completion_length} tokens, judge {args.judge_max_tokens} tokens "
          f"x {args.judge_repeats}")
    print("step  actor generation (s)  judge (s)  judge / actor")
    for i, (a, j) in enumerate(zip(actor_s, judge_s), start=args.warmup + 1):
        print(f"{i:>4}  {a:>20.3f}  {j:>9.3f}  {j / a:>13.2f}")
    print(f"tokens per step: actor reads {statistics.mean(actor_in):.0f}, writes {statistics.mean(actor_out):.0f}; "
          f"judge reads {statistics.mean(judge_in):.0f}, writes {statistics.mean(judge_out):.0f}")
    print(f"judge cost / actor generation per step: median {statistics.median(ratios):.2f}x, "
          f"total {sum(judge_s) / sum(actor_s):.2f}x ({args.steps} steps)")


def _judge_prompt_tokens(processor, request) -> int:
    content = [{"type": "image", "image": image} for image in request.images]
    content.append({"type": "text", "text": request.text})
    messages = [{"role": "system", "content": [{"type": "text", "text": request.system}]},
                {"role": "user", "content": content}]
    return len(processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                             return_dict=True)["input_ids"][0])


if __name__ == "__main__":
    main()
