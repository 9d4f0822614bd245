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

from .benchmarks import BENCHMARKS, PAPER_BENCHMARKS, EvalError, get_benchmark
from .config import EvalConfig, check_config, help_of
from .report import compare
from .runner import evaluate


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
    defaults = EvalConfig()
    parser = _Parser(
        prog="python -m self_evolve_trl.eval",
        description=__doc__.splitlines()[0].strip("`"),
    )

    def flag(name: str, **kwargs):
        default = kwargs.setdefault("default", getattr(defaults, name))
        shown = "" if default in (None, "") else f" Default: {default}."
        parser.add_argument("--" + name.replace("_", "-"), help=help_of(name) + shown, **kwargs)

    flag("model")
    flag("base_model")
    parser.add_argument("--benchmarks", default=",".join(PAPER_BENCHMARKS),
                        help=f"Comma-separated, from: {', '.join(BENCHMARKS)}. Default: the papers' five.")
    parser.add_argument("--compare", nargs=2, metavar=("A.json", "B.json"),
                        help="Print the per-benchmark difference B - A of two results.json files and exit.")
    parser.add_argument("--output-dir", help=help_of("output_dir") + " Default: eval_results/<model name>.")
    parser.add_argument("--data", action="append", metavar="BENCHMARK=PATH", help=help_of("data") + " Repeatable.")
    flag("data_dir")
    parser.add_argument("--split", action="append", metavar="BENCHMARK=SPLIT[,SPLIT...]",
                        help=help_of("splits") + " Repeatable.")
    parser.add_argument("--metric", action="append", metavar="BENCHMARK=METRIC",
                        help=help_of("metrics") + " Repeatable.")
    flag("mathverse_version")
    flag("limit", type=int)
    flag("backend", choices=["transformers", "vllm"])
    parser.add_argument("--batch-size", type=int, help=help_of("batch_size") + " Default: 8 (vllm: 256).")
    flag("max_new_tokens", type=int)
    flag("samples", type=int)
    flag("temperature", type=float)
    flag("top_p", type=float)
    flag("top_k", type=int)
    parser.add_argument("--preflight", action="store_true", help=help_of("preflight"))
    flag("repetition_penalty", type=float)
    flag("seed", type=int)
    flag("instruction")
    flag("choice_hint")
    flag("choices_hint")
    flag("min_pixels", type=int)
    flag("max_pixels", type=int)
    flag("dtype")
    flag("device")
    flag("tensor_parallel_size", type=int)
    flag("gpu_memory_utilization", type=float)
    flag("max_model_len", type=int)
    flag("llm_extractor", metavar="MODEL")
    flag("llm_extractor_base_url")
    flag("llm_extractor_api_key_env")
    parser.add_argument("--no-progress", action="store_true", help="No progress bars.")
    return parser


def config_from_args(args):
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
        choice_hint=args.choice_hint,
        choices_hint=args.choices_hint,
        min_pixels=args.min_pixels,
        max_pixels=args.max_pixels,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size or (256 if args.backend == "vllm" else 8),
        samples=args.samples,
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=args.top_k,
        preflight=args.preflight,
        repetition_penalty=args.repetition_penalty,
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
    # normalise names now, so that --data/--split/--metric keys match the registry's
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
            print(compare(*args.compare), end="")
            return 0
        config = config_from_args(args)
        check_config(config)  # names and options, before any model or data is loaded
        import datasets  # heavy (pyarrow, pandas): not imported for `--help`, `--compare` or a bad flag

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
