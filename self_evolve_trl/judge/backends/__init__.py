"""Judge backends: each turns a list of `JudgeRequest`s into the judge's raw outputs, one `JudgeOutput` per request.

- `reference` (`reference.py`, `ReferenceJudge`): the frozen initial policy, in the training process;
- `openai` (`openai.py`, `OpenAIJudge`): an OpenAI-compatible chat-completions endpoint (e.g. `vllm serve`).

`judge(requests, seeds)` takes one seed per request (`seeds.judge_seed`, made of the run's seed, the step, the
generation batch, the completion's global index and the repeat). A backend never raises for one failed judgement: the
output then has `text=None` and a short `error`, and the provider counts it and applies the recipe's failure policy.

Adding a backend: a module with a class that follows `JudgeBackend` (its `from_settings(settings, trainer)` reads the
`judge_*` fields it needs), and one entry in `JUDGE_BACKENDS` (name -> the class or its `"module:Class"` path): the
name is then a valid `judge_backend`. A recipe may also name the class directly: `judge_backend: my_judges:MyJudge`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ...plugins import import_object


if TYPE_CHECKING:
    from ..prompt import JudgeRequest


@dataclass(frozen=True)
class JudgeOutput:
    """What the judge answered (`text`), or why it did not (`error`, with `text=None`)."""

    text: str | None
    error: str | None = None
    latency: float | None = None  # seconds for this request (endpoint backends)


class JudgeBackend(Protocol):
    """What the provider needs of a judge backend."""

    name: str

    @classmethod
    def from_settings(cls, settings: Any, trainer: Any) -> JudgeBackend:
        """The backend that `settings` (the training config's `judge_*` fields) asks for, for `trainer`."""

    def judge(self, requests: list[JudgeRequest], seeds: list[int] | None = None) -> list[JudgeOutput]:
        """The judge's output for each request, in order, each sampled with its seed; never raises for one failed
        judgement."""

    def describe(self) -> str:
        """The judge as messages name it, e.g. "at http://host:8000/v1 (model m)"."""

    def close(self) -> None:
        """Free what the backend holds between calls (threads, connections); a later `judge()` may reopen them."""


# name -> the backend class or its "module:Class" path; paths are imported when the backend is built, so that
# importing the judge package imports neither torch nor the `openai` client.
JUDGE_BACKENDS: dict[str, type | str] = {
    "reference": "self_evolve_trl.judge.backends.reference:ReferenceJudge",
    "openai": "self_evolve_trl.judge.backends.openai:OpenAIJudge",
}

def _load(target: type | str) -> Any:
    return import_object(target) if isinstance(target, str) else target


def backend_class(name: str) -> type:
    """The class of the judge backend registered as `name`, or imported from a `module:Class` path."""
    if name not in JUDGE_BACKENDS and ":" in name:
        return _load(name)
    try:
        return _load(JUDGE_BACKENDS[name])
    except KeyError:
        raise ValueError(f"Unknown judge_backend {name!r}; valid choices: {', '.join(JUDGE_BACKENDS)}.") from None


def build_backend(trainer) -> JudgeBackend:
    """The judge backend that `trainer.args` (`judge_backend` and the other `judge_*` fields) asks for."""
    return backend_class(trainer.args.judge_backend).from_settings(trainer.args, trainer)


__all__ = [
    "JUDGE_BACKENDS",
    "JudgeBackend",
    "JudgeOutput",
    "backend_class",
    "build_backend",
]
