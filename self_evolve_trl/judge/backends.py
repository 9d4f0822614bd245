"""Judge backends: each turns a list of `JudgeRequest`s into the judge's raw outputs, one per request.

`judge(requests, seeds)` takes one seed per request (`seeds.judge_seed`, made of the run's seed, the step, the
generation batch, the completion's global index and the repeat):

- `ReferenceJudge`: the frozen initial policy, in the training process, with batched `generate` calls; with
  `reproducible_generation`, each judgement is generated alone on its own seed instead, so that it does not depend on
  the judgements batched with it (nor on how completions are spread over processes).
- `OpenAIJudge`: an OpenAI-compatible chat-completions endpoint, with the `openai` client (timeouts, retries with
  exponential backoff), a bounded pool of concurrent requests, and images sent as base64 data URLs. Each request
  carries its seed (the `seed` field, which `vllm serve` and `transformers serve` honour).

A backend never raises for one failed judgement: the output then has `text=None` and a short `error`, and the
provider counts it and applies the recipe's failure policy.
"""

from __future__ import annotations

import base64
import hashlib
import inspect
import io
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from . import JudgeUnavailableError
from .prompt import JudgeRequest


@dataclass(frozen=True)
class JudgeOutput:
    """What the judge answered (`text`), or why it did not (`error`, with `text=None`)."""

    text: str | None
    error: str | None = None
    latency: float | None = None  # seconds for this request (endpoint backends)


# ------------------------------------------------------------------------------------------------------------------
# In process: the frozen initial policy


class ReferenceJudge:
    """The frozen copy of the initial policy as the judge, in the training process.

    Where the frozen weights come from, in order:
    - the policy is a PEFT model: the policy itself with its adapter disabled (or TRL's "ref" adapter when an
      existing adapter is re-trained), i.e. the base model;
    - TRL built a reference model (beta > 0) that stays frozen: that model;
    - otherwise (beta = 0, or `sync_ref_model`, which blends the policy into TRL's reference model every
      `ref_model_sync_steps`): a frozen copy of the initial model, loaded once for the judge, placed like TRL's
      reference model.

    Every judgement of a step is made in batched `generate` calls of `batch_size` prompts each, sampled from torch's
    RNG; with `per_judgement_seeds` (the trainer's `reproducible_generation`), one `generate` call per judgement,
    seeded by its seed.
    """

    name = "reference"

    def __init__(self, trainer, temperature: float = 1.0, top_p: float = 0.9, max_tokens: int = 1024,
                 batch_size: int | None = None, per_judgement_seeds: bool = False):
        from accelerate.utils import is_peft_model
        from transformers import GenerationConfig

        self.trainer = trainer
        self.processor = trainer.processing_class
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        self.batch_size = batch_size or trainer.args.per_device_train_batch_size
        self.per_judgement_seeds = per_judgement_seeds
        # transformers >= 5 wants the processor's own arguments in `processor_kwargs`
        takes_processor_kwargs = "processor_kwargs" in inspect.signature(self.processor.apply_chat_template).parameters
        self._padding = {"processor_kwargs": {"padding": True}} if takes_processor_kwargs else {"padding": True}
        policy = trainer.accelerator.unwrap_model(trainer.model)
        if is_peft_model(policy):
            self.source = "peft_base"
            self.frozen_model = None
        elif trainer.ref_model is not None and not trainer.args.sync_ref_model:
            self.source = "ref_model"
            self.frozen_model = trainer.ref_model
        else:
            self.source = "frozen_copy"
            self.frozen_model = self._load_frozen_copy(policy)

        eos = [self.tokenizer.eos_token_id, *_as_list(getattr(policy.generation_config, "eos_token_id", None))]
        suppress = [i for i in (getattr(trainer, "_image_pad_token_id", None),
                                getattr(trainer, "_video_pad_token_id", None)) if i is not None]
        self.generation_config = GenerationConfig(
            max_new_tokens=max_tokens,
            do_sample=temperature > 0,
            temperature=temperature if temperature > 0 else None,
            top_p=top_p,
            top_k=0,
            eos_token_id=sorted({i for i in eos if i is not None}),
            pad_token_id=self.tokenizer.pad_token_id,
            suppress_tokens=suppress or None,
            disable_compile=True,
        )

    def describe(self) -> str:
        if self.source == "frozen_copy" and self.trainer.ref_model is not None:  # sync_ref_model moves TRL's copy
            return ("'reference' (a frozen copy of the initial model, since sync_ref_model updates TRL's reference "
                    "model)")
        return {
            "peft_base": "'reference' (the base model, adapter disabled)",
            "ref_model": "'reference' (TRL's reference model)",
            "frozen_copy": "'reference' (a frozen copy of the initial model)",
        }[self.source]

    def _load_frozen_copy(self, policy):
        from trl.models import prepare_deepspeed, prepare_fsdp
        from trl.trainer.utils import create_model_from_path, get_config_model_id

        trainer, args = self.trainer, self.trainer.args
        kwargs = dict(args.model_init_kwargs or {})
        if args.distributed_state.distributed_type in ("MULTI_GPU", "DEEPSPEED"):
            kwargs["device_map"] = None
        kwargs.setdefault("trust_remote_code", args.trust_remote_code)
        kwargs.setdefault("dtype", policy.dtype)
        kwargs.setdefault("attn_implementation", policy.config._attn_implementation)
        model = create_model_from_path(get_config_model_id(policy.config), **kwargs)
        model.eval()
        model.requires_grad_(False)
        if trainer.is_deepspeed_enabled:
            return prepare_deepspeed(model, trainer.accelerator)
        if trainer.is_fsdp_enabled:
            return prepare_fsdp(model, trainer.accelerator)
        return trainer.accelerator.prepare_model(model, evaluation_mode=True)

    @contextmanager
    def model(self) -> Iterator[torch.nn.Module]:
        """The frozen judge model, ready for `generate` (ZeRO-3 parameters gathered as for TRL's generation)."""
        from trl.models import unwrap_model_for_generation
        from trl.trainer.utils import use_adapter

        trainer = self.trainer
        unwrap = {
            "accelerator": trainer.accelerator,
            "gather_deepspeed3_params": trainer.args.ds3_gather_for_generation,
            "gradient_checkpointing_kwargs": trainer.args.gradient_checkpointing_kwargs,
        }
        if self.source == "peft_base":
            with unwrap_model_for_generation(trainer.model_wrapped, **unwrap) as model:
                with use_adapter(model, adapter_name="ref" if "ref" in model.peft_config else None):
                    yield model
        else:
            with unwrap_model_for_generation(self.frozen_model, **unwrap) as model:
                yield model

    def _conversation(self, request: JudgeRequest) -> list[dict]:
        if not getattr(self.trainer, "_is_vlm", True):
            messages = [{"role": "system", "content": request.system}] if request.system else []
            return messages + [{"role": "user", "content": request.text}]
        content = [{"type": "image", "image": image} for image in request.images]
        content.append({"type": "text", "text": request.text})
        system = [{"role": "system", "content": [{"type": "text", "text": request.system}]}] if request.system else []
        return system + [{"role": "user", "content": content}]

    def judge(self, requests: list[JudgeRequest], seeds: list[int] | None = None) -> list[JudgeOutput]:
        if self.per_judgement_seeds and seeds is None:
            raise ValueError("The reference judge samples each judgement on its own seed here: pass `seeds`.")
        texts: list[str] = []
        padding_side = self.tokenizer.padding_side
        self.tokenizer.padding_side = "left"
        try:
            with self.model() as model, torch.no_grad():
                if self.per_judgement_seeds:
                    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
                    for request, seed in zip(requests, seeds, strict=True):
                        with torch.random.fork_rng(devices=devices):
                            torch.manual_seed(seed)
                            texts.extend(self._generate(model, [request]))
                else:
                    for start in range(0, len(requests), self.batch_size):
                        texts.extend(self._generate(model, requests[start : start + self.batch_size]))
        finally:
            self.tokenizer.padding_side = padding_side
        return [JudgeOutput(text=text) for text in texts]

    def _generate(self, model, requests: list[JudgeRequest]) -> list[str]:
        """The judge's answers to `requests`, in one batched `generate` call."""
        batch = self.processor.apply_chat_template(
            [self._conversation(r) for r in requests],
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
            return_tensors="pt",
            **self._padding,
        )
        device = self.trainer.accelerator.device
        batch = {k: v.to(device) for k, v in batch.items() if isinstance(v, torch.Tensor)}
        sequences = model.generate(**batch, generation_config=self.generation_config)
        return self.tokenizer.batch_decode(sequences[:, batch["input_ids"].size(1) :], skip_special_tokens=True)

    def close(self) -> None:
        pass


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


# ------------------------------------------------------------------------------------------------------------------
# Over HTTP: an OpenAI-compatible chat-completions endpoint


def image_data_url(image: Any) -> str:
    """A `data:image/png;base64,...` URL of an image (PIL image, path, bytes or `datasets` dict), lossless."""
    from ..images import load_image

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
        import openai

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
        self.base_url = _redacted_url(str(self.client.base_url).rstrip("/"))
        self.sampling = {"temperature": temperature, "top_p": top_p, "max_tokens": max_tokens}
        self.model = model or self._served_model()

    def describe(self) -> str:
        return f"at {self.base_url} (model {self.model})"

    def _served_model(self) -> str:
        import openai

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
        import openai

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
        import openai

        self.client = openai.OpenAI(**self._client_kwargs)
        self.pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="judge")

    def close(self) -> None:
        """End the request threads and close the connections."""
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None
            self.client.close()


def _redacted_url(url: str) -> str:
    """The URL as logs and errors show it: without user info (`user:key@`) or query string (`?key=...`).

    Example:

    ```python
    >>> _redacted_url("http://user:s3cret@judge.local:8001/v1?api_key=s3cret")
    'http://***@judge.local:8001/v1'

    ```
    """
    from urllib.parse import urlsplit, urlunsplit

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


def build_backend(trainer):
    """The judge backend that `trainer.args` (`judge_backend` and the other `judge_*` fields) asks for."""
    args = trainer.args
    if args.judge_backend == "reference":
        return ReferenceJudge(trainer, args.judge_temperature, args.judge_top_p, args.judge_max_tokens,
                              args.judge_batch_size, per_judgement_seeds=args.reproducible_generation)
    return OpenAIJudge(args.judge_base_url, args.judge_model, args.judge_api_key_env, args.judge_temperature,
                       args.judge_top_p, args.judge_max_tokens, args.judge_timeout, args.judge_max_retries,
                       args.judge_concurrency)
