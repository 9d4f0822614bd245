"""`ReferenceJudge`: the frozen initial policy as the judge, in the training process.

It makes batched `generate` calls; with `reproducible_generation`, each judgement is generated alone on its own seed
instead, so that it does not depend on the judgements batched with it (nor on how completions are spread over
processes).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from accelerate.utils import is_peft_model
from transformers import GenerationConfig
from trl.models import prepare_deepspeed, prepare_fsdp, unwrap_model_for_generation
from trl.trainer.utils import create_model_from_path, get_config_model_id, use_adapter

from ..prompt import JudgeRequest
from . import JudgeOutput


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
        self.trainer = trainer
        self.processor = trainer.processing_class
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        self.batch_size = batch_size or trainer.args.per_device_train_batch_size
        self.per_judgement_seeds = per_judgement_seeds
        # transformers >= 5 wants the processor's own arguments in `processor_kwargs`
        takes_processor_kwargs = "processor_kwargs" in inspect.signature(self.processor.apply_chat_template).parameters
        self._padding = {"processor_kwargs": {"padding": True}} if takes_processor_kwargs else {"padding": True}
        policy = trainer.accelerator.unwrap_model(trainer.model)
        self.source, self.frozen_model = self.judge_weights(policy)

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

    @classmethod
    def from_settings(cls, settings, trainer) -> ReferenceJudge:
        """The judge that `settings` (the `judge_*` fields and `reproducible_generation`) asks for, in `trainer`."""
        return cls(trainer, temperature=settings.judge_temperature, top_p=settings.judge_top_p,
                   max_tokens=settings.judge_max_tokens, batch_size=settings.judge_batch_size,
                   per_judgement_seeds=settings.reproducible_generation)

    def describe(self) -> str:
        if self.source == "frozen_copy" and self.trainer.ref_model is not None:  # sync_ref_model moves TRL's copy
            return ("'reference' (a frozen copy of the initial model, since sync_ref_model updates TRL's reference "
                    "model)")
        return {
            "peft_base": "'reference' (the base model, adapter disabled)",
            "ref_model": "'reference' (TRL's reference model)",
            "frozen_copy": "'reference' (a frozen copy of the initial model)",
        }[self.source]

    def judge_weights(self, policy) -> tuple[str, torch.nn.Module | None]:
        """Where the judge's frozen weights come from (the source's name) and the model holding them (None: the
        policy's own base, its adapter disabled). A backend judging with other weights overrides this."""
        if is_peft_model(policy):
            return "peft_base", None
        if self.trainer.ref_model is not None and not self.trainer.args.sync_ref_model:
            return "ref_model", self.trainer.ref_model
        return "frozen_copy", self.load_frozen(get_config_model_id(policy.config), policy)

    def load_frozen(self, model_id: str, policy) -> torch.nn.Module:
        """The model at `model_id`, frozen and placed like TRL's reference model (dtype and attention of `policy`)."""
        trainer, args = self.trainer, self.trainer.args
        kwargs = dict(args.model_init_kwargs or {})
        if args.distributed_state.distributed_type in ("MULTI_GPU", "DEEPSPEED"):
            kwargs["device_map"] = None
        kwargs.setdefault("trust_remote_code", args.trust_remote_code)
        kwargs.setdefault("dtype", policy.dtype)
        kwargs.setdefault("attn_implementation", policy.config._attn_implementation)
        model = create_model_from_path(model_id, **kwargs)
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
