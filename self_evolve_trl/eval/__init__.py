"""Evaluation on the papers' benchmarks: `python -m self_evolve_trl.eval --model PATH --benchmarks ...`.

- `benchmarks`: the registry (MathVision, MathVerse, WeMath, LogicVista, DynaMath, Geo3K, GeoQA): hub ids, columns,
  splits, rows to items; `loading`: reading one from the hub or a local copy.
- `scoring`: rule-based scoring per answer format and the benchmarks' aggregate metrics.
- `extraction`: answers read by rules, then optionally by an OpenAI-compatible LLM.
- `backends`: transformers `generate` (anywhere) and vLLM's offline engine (GPU).
- `config`: `EvalConfig` and its checks; `runner`: the loop, with its resumable per-sample cache (`cache`);
  `report`: the Markdown/JSON table and `--compare`; `preflight`: on a labelled dev split, whether label-free
  training is likely to help (`--preflight`).

Nothing here imports the training code (config, trainer) or the CLI.
"""

from .benchmarks import BENCHMARKS, PAPER_BENCHMARKS, EvalError, get_benchmark
from .config import EvalConfig
from .loading import load_benchmark
from .runner import evaluate
from .scoring import score_answer

__all__ = ["BENCHMARKS", "PAPER_BENCHMARKS", "EvalConfig", "EvalError", "evaluate", "get_benchmark", "load_benchmark",
           "score_answer"]
