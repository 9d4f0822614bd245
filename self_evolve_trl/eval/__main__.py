"""`python -m self_evolve_trl.eval --model PATH_OR_HUB_ID --benchmarks mathvision,mathverse,wemath,logicvista,dynamath`

Evaluates a base model, a full checkpoint or a LoRA adapter folder, prints the table and writes `results.md`,
`results.json`, per-question predictions and the resumable generation cache under `--output-dir`.
`python -m self_evolve_trl.eval --compare A/results.json B/results.json` prints the per-benchmark difference.
Bad input prints one line `error: ...` and exits with status 2.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

from .benchmarks import BENCHMARKS, PAPER_BENCHMARKS, EvalError


def _mapping(values: list[str], flag: str) -> dict[str, str]:
    out = {}
    for value in values or []:
        if "=" not in value:
            raise EvalError(f"{flag} takes BENCHMARK=VALUE, got {value!r}.")
        key, _, item = value.partition("=")
        out[key.strip().lower()] = item.strip()
    return out


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise EvalError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m self_evolve_trl.eval",
        description=__doc__.splitlines()[0].strip("`"),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--model", help="Hub id, model folder (full checkpoint) or LoRA adapter folder.")
    parser.add_argument("--base-model", help="Base model of a LoRA adapter (default: its adapter_config.json).")
    parser.add_argument("--benchmarks", default=",".join(PAPER_BENCHMARKS),
                        help=f"Comma-separated, from: {', '.join(BENCHMARKS)}.")
    parser.add_argument("--compare", nargs=2, metavar=("A.json", "B.json"),
                        help="Print the per-benchmark difference B - A of two results.json files and exit.")
    parser.add_argument("--output-dir", help="Where results and the cache go (default: eval_results/<model name>).")
    parser.add_argument("--data", action="append", metavar="BENCHMARK=PATH",
                        help="Local copy of a benchmark (parquet/jsonl/json/csv file or folder); repeatable.")
    parser.add_argument("--data-dir", help="Folder with local copies named after the benchmarks (DIR/mathvision, ...).")
    parser.add_argument("--split", action="append", metavar="BENCHMARK=SPLIT",
                        help="Another split, e.g. mathvision=testmini; repeatable.")
    parser.add_argument("--metric", action="append", metavar="BENCHMARK=METRIC",
                        help="Primary metric, e.g. wemath=score_loose or dynamath=average_case; repeatable.")
    parser.add_argument("--mathverse-version", default="Vision Only",
                        help="MathVerse problem_version to keep ('all' keeps the five versions).")
    parser.add_argument("--limit", type=int, help="First N questions per benchmark (DynaMath/WeMath: groups).")
    parser.add_argument("--backend", default="transformers", choices=["transformers", "vllm"])
    parser.add_argument("--batch-size", type=int, default=None,
                        help="Questions per generate call and cache flush (default 8; vllm 256).")
    parser.add_argument("--max-new-tokens", type=int, default=2048)
    parser.add_argument("--samples", type=int, default=0,
                        help="Also draw k samples per question: sampled pass@1 and maj@k (k >= 2).")
    parser.add_argument("--temperature", type=float, default=1.0, help="Sampling temperature (with --samples).")
    parser.add_argument("--top-p", type=float, default=1.0, help="Sampling top-p (with --samples).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--instruction", default=None,
                        help="Instruction appended to every question (default: the training instruction).")
    parser.add_argument("--choice-hint", default=None,
                        help="Sentence added to choice questions ('' for none; default asks for the option letter).")
    parser.add_argument("--min-pixels", type=int, default=None, help="Qwen resize lower bound (pixels).")
    parser.add_argument("--max-pixels", type=int, default=None, help="Qwen resize upper bound (pixels).")
    parser.add_argument("--dtype", default="auto", help="auto (bf16 on GPU, fp32 on CPU), bfloat16, float16, float32.")
    parser.add_argument("--device", default="auto", help="transformers backend: auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--tensor-parallel-size", type=int, default=1, help="vllm backend.")
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.85, help="vllm backend.")
    parser.add_argument("--max-model-len", type=int, default=None, help="vllm backend.")
    parser.add_argument("--llm-extractor", metavar="MODEL",
                        help="OpenAI-compatible model that reads answers the rules cannot (off by default).")
    parser.add_argument("--llm-extractor-base-url", help="Its endpoint, e.g. http://localhost:8000/v1.")
    parser.add_argument("--llm-extractor-api-key-env", default="OPENAI_API_KEY",
                        help="Environment variable holding its API key.")
    parser.add_argument("--no-progress", action="store_true", help="No progress bars.")
    return parser


def config_from_args(args):
    from .runner import EvalConfig

    if not args.model:
        raise EvalError("--model is required (a hub id, a model folder or a LoRA adapter folder).")
    benchmarks = [name.strip() for name in args.benchmarks.split(",") if name.strip()]
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", os.path.basename(os.path.normpath(args.model))) or "model"
    config = EvalConfig(
        model=args.model,
        benchmarks=benchmarks,
        output_dir=args.output_dir or os.path.join("eval_results", name),
        base_model=args.base_model,
        backend=args.backend,
        data=_mapping(args.data, "--data"),
        data_dir=args.data_dir,
        splits=_mapping(args.split, "--split"),
        metrics=_mapping(args.metric, "--metric"),
        limit=args.limit,
        instruction=args.instruction,
        min_pixels=args.min_pixels,
        max_pixels=args.max_pixels,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size or (256 if args.backend == "vllm" else 8),
        samples=args.samples,
        temperature=args.temperature,
        top_p=args.top_p,
        seed=args.seed,
        dtype=args.dtype,
        device=args.device,
        mathverse_version=args.mathverse_version,
        llm_extractor=args.llm_extractor,
        llm_extractor_base_url=args.llm_extractor_base_url,
        llm_extractor_api_key_env=args.llm_extractor_api_key_env,
        tensor_parallel_size=args.tensor_parallel_size,
        gpu_memory_utilization=args.gpu_memory_utilization,
        max_model_len=args.max_model_len,
        progress=not args.no_progress,
    )
    if args.choice_hint is not None:
        config.choice_hint = args.choice_hint
    # normalise names now, so that --data/--split/--metric keys match the registry's
    from .benchmarks import get_benchmark

    for mapping in (config.data, config.splits, config.metrics):
        for key in list(mapping):
            mapping[get_benchmark(key).name] = mapping.pop(key)
    config.benchmarks = [get_benchmark(b).name for b in config.benchmarks]
    return config


def main(argv: list[str] | None = None) -> int:
    config = None
    try:
        args = build_parser().parse_args(argv)
        if args.compare:
            from .report import compare

            print(compare(*args.compare), end="")
            return 0
        config = config_from_args(args)
        from .runner import check_config, evaluate

        check_config(config)  # names and options, before any model or data is loaded
        import datasets

        datasets.disable_progress_bars()  # the evaluation has its own
        results = evaluate(config)
    except EvalError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if config is None:
            raise
        print(f"\ninterrupted: finished questions are cached under {os.path.join(config.output_dir, 'samples')}; "
              "run the same command again to resume.", file=sys.stderr)
        return 130
    print(results["markdown"], end="")
    print(f"\nWrote {os.path.join(config.output_dir, 'results.md')} and results.json.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
