"""`OpenAIJudge`: a judge behind an OpenAI-compatible chat-completions endpoint.

It uses the `openai` client (timeouts, retries with exponential backoff), a bounded pool of concurrent requests, and
sends images as base64 data URLs. Each request carries its seed (the `seed` field, which `vllm serve` and
`transformers serve` honour).
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import openai

from ...data.images import load_image
from ...errors import JudgeUnavailableError
from ..prompt import JudgeRequest
from . import JudgeOutput


def image_data_url(image: Any) -> str:
    """A `data:image/png;base64,...` URL of an image (PIL image, path, bytes or `datasets` dict), lossless."""
    buffer = io.BytesIO()
    load_image(image).save(buffer, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


# Seconds to open a connection to the judge endpoint (at most `judge_timeout`): a host that does not answer fails
# fast instead of holding a request for the whole `judge_timeout`, which is sized for long generations.
CONNECT_TIMEOUT = 10.0


class OpenAIJudge:
    """A judge behind any OpenAI-compatible chat-completions endpoint (e.g. `vllm serve` of the base model).

    Requests run concurrently, at most `concurrency` at a time. The `openai` client applies `timeout` (seconds) to
    each request (opening the connection: at most `CONNECT_TIMEOUT`) and retries connection errors, timeouts,
    408/409/429 and 5xx answers up to `max_retries` times with exponential backoff. The API key is read from the
    environment variable `api_key_env` (any non-empty value works for a `vllm serve` without `--api-key`); it is
    sent only in the request header, and scrubbed from error messages. `model=None` asks the endpoint which model it
    serves (`GET /models`). `close()` ends the request threads and connections (the provider calls it when training
    ends); a later `judge()` opens them again.
    """

    name = "openai"

    def __init__(self, base_url: str, model: str | None = None, api_key_env: str = "JUDGE_API_KEY",
                 temperature: float = 1.0, top_p: float = 0.9, max_tokens: int = 1024, timeout: float = 120.0,
                 max_retries: int = 3, concurrency: int = 32):
        self._secret = os.environ.get(api_key_env) or ""
        self._client_kwargs = {
            "base_url": base_url,
            "api_key": self._secret or "EMPTY",
            "timeout": openai.Timeout(timeout, connect=min(timeout, CONNECT_TIMEOUT)),
            "max_retries": max_retries,
        }
        self.concurrency = concurrency
        self.pool: ThreadPoolExecutor | None = None
        self._open()
        self.base_url = redacted_url(str(self.client.base_url).rstrip("/"))
        self.sampling = {"temperature": temperature, "top_p": top_p, "max_tokens": max_tokens}
        self.model = model or self._served_model()

    @classmethod
    def from_settings(cls, settings, trainer=None) -> OpenAIJudge:
        """The judge that `settings` (the `judge_*` fields) asks for; `trainer` is not needed."""
        return cls(settings.judge_base_url, model=settings.judge_model, api_key_env=settings.judge_api_key_env,
                   temperature=settings.judge_temperature, top_p=settings.judge_top_p,
                   max_tokens=settings.judge_max_tokens, timeout=settings.judge_timeout,
                   max_retries=settings.judge_max_retries, concurrency=settings.judge_concurrency)

    def describe(self) -> str:
        return f"at {self.base_url} (model {self.model})"

    def _served_model(self) -> str:
        try:
            served = [m.id for m in self.client.models.list().data]
        except openai.OpenAIError as error:
            raise JudgeUnavailableError(
                f"Cannot ask the judge at {self.base_url} which model it serves ({self._describe_error(error)}); "
                "start the judge server or set judge_model."
            ) from None
        if not served:
            raise JudgeUnavailableError(f"The judge at {self.base_url} serves no model; set judge_model.")
        return served[0]

    def _scrub(self, text: str) -> str:
        """One line, without the API key."""
        text = " ".join(str(text).split())
        return text.replace(self._secret, "***") if self._secret else text

    def _describe_error(self, error: BaseException) -> str:
        return f"{type(error).__name__}: {self._scrub(error)[:300] or 'no message'}"

    def _messages(self, request: JudgeRequest, urls: dict) -> list[dict]:
        content: list[dict] = [{"type": "image_url", "image_url": {"url": urls[_image_key(image)]}}
                               for image in request.images]
        content.append({"type": "text", "text": request.text})
        messages = [{"role": "system", "content": request.system}] if request.system else []
        return messages + [{"role": "user", "content": content}]

    def _request(self, messages: list[dict], seed: int | None = None) -> JudgeOutput:
        sampling = self.sampling if seed is None else {**self.sampling, "seed": seed}
        start = time.perf_counter()
        try:
            response = self.client.chat.completions.create(model=self.model, messages=messages, **sampling)
        except openai.OpenAIError as error:
            return JudgeOutput(text=None, error=self._describe_error(error), latency=time.perf_counter() - start)
        except Exception as error:  # noqa: BLE001 - e.g. a 200 whose JSON body is cut off: the client's JSONDecodeError
            error = f"MalformedResponse: {self._describe_error(error)}"
            return JudgeOutput(text=None, error=error, latency=time.perf_counter() - start)
        latency = time.perf_counter() - start
        choices = getattr(response, "choices", None)
        if not choices or getattr(choices[0], "message", None) is None:
            # Not a chat completion at all (an HTML page, an empty body): the endpoint is broken, the request failed.
            shown = self._scrub(response)[:100]
            error = f"MalformedResponse: not a chat completion: {shown!r}"
            return JudgeOutput(text=None, error=error, latency=latency)
        return JudgeOutput(text=choices[0].message.content or "", latency=latency)

    def judge(self, requests: list[JudgeRequest], seeds: list[int] | None = None) -> list[JudgeOutput]:
        urls: dict = {}
        for request in requests:  # the G completions of a prompt share its images: encode each image once
            for image in request.images:
                key = _image_key(image)
                if key not in urls:
                    urls[key] = image_data_url(image)
        if self.pool is None:  # closed when training ended, and judging again (e.g. `trainer.evaluate()` after it)
            self._open()
        seeds = [None] * len(requests) if seeds is None else seeds
        return list(self.pool.map(self._request, [self._messages(r, urls) for r in requests], seeds))

    def _open(self) -> None:
        """The client (its connections) and the pool of request threads."""
        self.client = openai.OpenAI(**self._client_kwargs)
        self.pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="judge")

    def close(self) -> None:
        """End the request threads and close the connections."""
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None
            self.client.close()


def redacted_url(url: str) -> str:
    """The URL as logs and errors show it: without user info (`user:key@`) or query string (`?key=...`).

    Example:

    ```python
    >>> redacted_url("http://user:s3cret@judge.local:8001/v1?api_key=s3cret")
    'http://***@judge.local:8001/v1'

    ```
    """
    parts = urlsplit(url)
    netloc = parts.netloc if "@" not in parts.netloc else "***@" + parts.netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _image_key(image: Any):
    """A content key for an image, so that equal images (copies in the rows of a group) are encoded once."""
    if hasattr(image, "tobytes"):
        return (image.size, image.mode, hashlib.blake2b(image.tobytes(), digest_size=16).digest())
    if isinstance(image, dict):
        return image.get("path") or hashlib.blake2b(image.get("bytes") or b"", digest_size=16).digest()
    return image if isinstance(image, str) else hashlib.blake2b(bytes(image), digest_size=16).digest()
