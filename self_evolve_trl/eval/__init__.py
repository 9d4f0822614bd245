"""Evaluation on the papers' benchmarks: `python -m self_evolve_trl.eval --model PATH --benchmarks ...`.

- `benchmarks`: the registry (MathVision, MathVerse, WeMath, LogicVista, DynaMath, Geo3K, GeoQA): hub ids, columns,
  splits, local copies, rows to items.
- `scoring`: rule-based scoring per answer format and the benchmarks' aggregate metrics.
- `extraction`: answers read by rules, then optionally by an OpenAI-compatible LLM.
- `backends`: transformers `generate` (anywhere) and vLLM's offline engine (GPU).
- `runner`: the loop with its resumable per-sample cache; `report`: the Markdown/JSON table and `--compare`.
"""

from .benchmarks import BENCHMARKS, PAPER_BENCHMARKS, EvalError, get_benchmark, load_benchmark
from .scoring import score_answer


__all__ = ["BENCHMARKS", "PAPER_BENCHMARKS", "EvalError", "get_benchmark", "load_benchmark", "score_answer",
           "EvalConfig", "evaluate"]


def __getattr__(name):
    if name in ("EvalConfig", "evaluate"):
        from . import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'self_evolve_trl.eval' has no attribute {name!r}")
