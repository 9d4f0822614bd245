"""Reading the final answer out of a model's output: rules first, then (optionally) an LLM.

The rules, in order: the last `\\boxed{}` (the format the training instruction asks for), the last
`<answer>...</answer>`, then a closing phrase such as "the answer is (B)" or "Answer: 12". What no rule can read is an
abstention, scored wrong, unless an OpenAI-compatible LLM extractor is configured, as VLMEvalKit does with its judge
model. The extractor is asked only to *extract* the answer, never to grade it; grading stays rule based.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from dataclasses import dataclass

from ..answers import extract_answer
from .benchmarks import EvalError

RULES = ("boxed", "answer_tag", "phrase")
RULES_DESCRIPTION = "rules: last \\boxed{} > last <answer></answer> > closing 'the answer is ...' / 'Answer: ...'"

_PHRASE = re.compile(
    r"(?:final answer|the answer|correct answer|correct option|answer)\s*(?:is\s*:?|:|=)\s*(?:option\s*)?"
    r"([^\n]+?)\s*(?:\.\s|\.$|\n|$)",
    re.IGNORECASE,
)
# where the answer ends and its justification starts: "B, because A fails", "12 since ..."
_REASON = re.compile(r"\s*[,;]?\s+(?:because|since|as|which|so|thus|hence|therefore|given|due to)\b.*$",
                     re.IGNORECASE | re.DOTALL)
_MATH_DELIMITERS = re.compile(r"^(?:\$+(.+?)\$+|\\\((.+?)\\\)|\\\[(.+?)\\\])$", re.DOTALL)


def _phrase_answer(text: str) -> str | None:
    """The answer of the last closing phrase, without the phrase repeated inside it ("Final Answer: The final answer
    is 5"), its justification ("B, because ...") or math delimiters (`$\\frac12$`)."""
    matches = _PHRASE.findall(text or "")
    if not matches:
        return None
    answer = matches[-1]
    while (inner := _PHRASE.findall(answer)) and inner[-1] != answer:
        answer = inner[-1]
    answer = _REASON.sub("", answer).strip().strip("*").strip()
    delimited = _MATH_DELIMITERS.match(answer)
    if delimited:
        answer = next(group for group in delimited.groups() if group is not None).strip()
    return answer or None


def extract_by_rules(text: str) -> tuple[str | None, str | None]:
    """(answer, rule that read it), or (None, None) when no rule can read the output.

    Example:

    ```python
    >>> extract_by_rules("<think>...</think> so \\\\boxed{12}")
    ('12', 'boxed')
    >>> extract_by_rules("Hence the answer is (B).")
    ('(B)', 'phrase')
    >>> extract_by_rules("The answer is B, because A fails.")
    ('B', 'phrase')
    >>> extract_by_rules("I cannot tell.")
    (None, None)

    ```
    """
    answer = extract_answer(text, "boxed")
    if answer is not None:
        return answer, "boxed"
    answer = extract_answer(text, "answer_tag")
    if answer is not None:
        return answer, "answer_tag"
    answer = _phrase_answer(text)
    if answer is not None:
        return answer, "phrase"
    return None, None


EXTRACTION_PROMPT = """You extract the final answer from a model's response to a question. Do not solve the \
question and do not judge the answer: copy the answer the response commits to, as short as possible (a number, an \
expression, or the option letter(s) for a multiple-choice question). If the response commits to no answer, reply \
exactly NONE.

Question:
{question}

Response:
{response}

Final answer:"""


@dataclass
class LLMExtractor:
    """Extraction by an OpenAI-compatible chat model (the `openai` client; any vLLM/SGLang/OpenAI endpoint).

    Replies are cached in a jsonl file keyed by model, question and response, so a resumed evaluation never asks
    twice.
    """

    model: str
    base_url: str | None = None
    api_key: str | None = None
    cache_path: str | None = None
    max_tokens: int = 64
    timeout: float = 60.0
    max_retries: int = 2

    def __post_init__(self):
        from openai import OpenAI  # optional dependency, needed only with --llm-extractor

        self.client = OpenAI(
            base_url=self.base_url, api_key=self.api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY",
            timeout=self.timeout, max_retries=self.max_retries,
        )
        self._lock = threading.Lock()
        self._cache: dict[str, str | None] = {}
        if self.cache_path and os.path.exists(self.cache_path):
            with open(self.cache_path) as f:
                for line in f:
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError:  # a line cut short by an interruption
                        continue
                    self._cache[record["key"]] = record["answer"]
        self.calls = 0

    @property
    def description(self) -> str:
        where = f" at {self.base_url}" if self.base_url else ""
        return f"LLM extractor {self.model}{where} (temperature 0) for outputs the rules cannot read"

    def _key(self, question: str, response: str) -> str:
        return hashlib.sha256(json.dumps([self.model, question, response]).encode()).hexdigest()

    def __call__(self, question: str, response: str) -> str | None:
        key = self._key(question, response)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        from openai import OpenAIError  # optional dependency, needed only with --llm-extractor

        try:
            reply = self.client.chat.completions.create(
                model=self.model,
                messages=[{"role": "user", "content": EXTRACTION_PROMPT.format(question=question, response=response)}],
                temperature=0.0,
                max_tokens=self.max_tokens,
            )
        except OpenAIError as error:
            raise EvalError(
                f"The LLM extractor {self.model} at {self.base_url or 'the OpenAI API'} failed "
                f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}); the generated outputs "
                "are cached: run the same command again once it answers."
            ) from None
        self.calls += 1
        text = (reply.choices[0].message.content or "").strip()
        answer = None
        if text:
            answer = extract_answer(text, "boxed") or text.splitlines()[0].strip()
            if answer.upper().rstrip(".") == "NONE":
                answer = None
        with self._lock:
            self._cache[key] = answer
            if self.cache_path:
                os.makedirs(os.path.dirname(self.cache_path) or ".", exist_ok=True)
                with open(self.cache_path, "a") as f:
                    f.write(json.dumps({"key": key, "answer": answer}) + "\n")
        return answer
