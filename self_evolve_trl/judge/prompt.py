"""The judge's prompt: a template file with a system part and a user part, filled in for each candidate.

A template is a text file with two sections, each opened by a marker line:

```text
=== system ===
... the rubric ...
=== user ===
[PROBLEM]
{problem}
[END PROBLEM]
[CANDIDATE_SOLUTION]
{completion}
[END CANDIDATE_SOLUTION]
```

`{problem}` becomes the text of the actor's user turn (the question with the format instruction), `{completion}`
the whole candidate completion, reasoning included. The images of the actor's prompt go before the user text. The
default template (`templates/default.txt`) states the judge's rubric (docs/math.md, "Actor–Judge") in our own words;
a recipe points `judge_prompt_template` at its own file to replace it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ..answers import completion_text


SYSTEM_MARKER = "=== system ==="
USER_MARKER = "=== user ==="
PLACEHOLDERS = ("{problem}", "{completion}")
_PLACEHOLDER = re.compile(r"\{problem\}|\{completion\}")


def default_template_path() -> str:
    """Path of the packaged default template."""
    return str(resources.files("self_evolve_trl.judge") / "templates" / "default.txt")


@dataclass(frozen=True)
class JudgeRequest:
    """One judgement to make: the system prompt, the user text and the images that go before it."""

    system: str
    text: str
    images: list[Any] = field(default_factory=list)


@dataclass(frozen=True)
class JudgeTemplate:
    system: str
    user: str
    path: str = "<string>"

    @classmethod
    def parse(cls, content: str, path: str = "<string>") -> "JudgeTemplate":
        """A template from the text of a template file; `ValueError` naming what is missing."""
        lines = content.splitlines()
        markers = [i for i, line in enumerate(lines) if line.strip() in (SYSTEM_MARKER, USER_MARKER)]
        names = [lines[i].strip() for i in markers]
        if names.count(USER_MARKER) != 1 or names.count(SYSTEM_MARKER) > 1:
            raise ValueError(
                f"Judge prompt template {path} needs one '{USER_MARKER}' line (and at most one '{SYSTEM_MARKER}' line "
                "before it) opening its sections."
            )
        sections = {"system": "", "user": ""}
        for k, i in enumerate(markers):
            end = markers[k + 1] if k + 1 < len(markers) else len(lines)
            sections["system" if names[k] == SYSTEM_MARKER else "user"] = "\n".join(lines[i + 1 : end]).strip("\n")
        if any(line.strip() for line in lines[: markers[0]]):
            raise ValueError(f"Judge prompt template {path} has text before its first section marker.")
        missing = [p for p in PLACEHOLDERS if p not in sections["user"]]
        if missing:
            raise ValueError(f"Judge prompt template {path}: the user section lacks {', '.join(missing)}.")
        return cls(system=sections["system"], user=sections["user"], path=path)

    @classmethod
    def load(cls, path: str | None = None) -> "JudgeTemplate":
        """The template in `path` (default: the packaged one)."""
        path = path or default_template_path()
        try:
            content = Path(path).read_text(encoding="utf-8")
        except OSError as error:
            raise ValueError(f"Cannot read judge prompt template {path}: {error.strerror or error}") from None
        return cls.parse(content, path)

    def request(self, problem: str, completion: Any, images: list[Any] | None = None) -> JudgeRequest:
        """The judgement of one candidate completion of a problem."""
        values = {"{problem}": problem, "{completion}": completion_text(completion)}
        # One pass, so that a placeholder written inside the problem or the completion stays as it is.
        text = _PLACEHOLDER.sub(lambda m: values[m.group(0)], self.user)
        return JudgeRequest(system=self.system, text=text, images=list(images or []))
