"""vLLM weight sync without NCCL: TRL's `VLLMGeneration` with a disk sync for server mode and the sync that works on
vLLM's CPU platform in colocate mode.

TRL pushes the trained weights to vLLM after each optimizer step. In server mode it streams them over an NCCL group
that the trainer opens with the server; in colocate mode it calls the engine's `load_weights` tensor by tensor. Two
settings need something else:

- **`vllm_weight_sync: disk`** (server mode). For clusters where the trainer cannot open an NCCL group with the server
  (firewalls, different fabrics), and for a server on the CPU, where NCCL does not exist. After each optimizer step
  the main process writes the weights as safetensors to a fresh folder under `vllm_weight_sync_dir`, gathered the way
  TRL gathers them (ZeRO-3 and FSDP: one parameter at a time; LoRA: the adapters merged into the base weights), then
  asks the server to load them (vLLM's `reload_weights`, a development endpoint) and resets its prefix cache. The
  folder is complete before the server reads it (written under a temporary name, then renamed), and the previous one
  is removed once the server has loaded the new one.
- **Colocate mode on vLLM's CPU platform.** vLLM's CPU kernels prepack the linear weights after loading, so TRL's
  tensor-by-tensor `load_weights` fails (`'Parameter' object has no attribute 'weight_loader'`). The weights go through
  the engine's `reload_weights` instead, which re-runs that processing. On a GPU TRL's own sync is used unchanged.

See docs/vllm.md for the cost of a disk sync.
"""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from safetensors.torch import save_file
from trl.generation.vllm_client import VLLMClient
from trl.generation.vllm_generation import VLLMGeneration

WEIGHT_SYNCS = ("nccl", "disk")

# Tensors per safetensors file: bounds the main process's extra memory while a sync is written.
SHARD_BYTES = 2 * 1024**3


def vllm_runs_on_cpu() -> bool:
    """Whether the installed vLLM runs on the CPU (vLLM's CPU build, or no accelerator)."""
    from vllm.platforms import current_platform  # vLLM is optional (and slow to import)

    return current_platform.is_cpu()


def write_safetensors_shards(named_tensors: Iterator[tuple[str, torch.Tensor]], folder: str,
                             shard_bytes: int = SHARD_BYTES) -> int:
    """Write `(name, tensor)` pairs to `folder` as `model-00001.safetensors`, ... of at most about `shard_bytes` each.

    Returns the bytes written. Each tensor is copied to the CPU as it arrives (under ZeRO-3 it is valid only while it
    is gathered).
    """
    os.makedirs(folder, exist_ok=True)
    shard: dict[str, torch.Tensor] = {}
    size = total = 0
    count = 0

    def flush():
        nonlocal shard, size, count
        if shard:
            count += 1
            save_file(shard, os.path.join(folder, f"model-{count:05d}.safetensors"), metadata={"format": "pt"})
            shard, size = {}, 0

    for name, tensor in named_tensors:
        shard[name] = tensor.detach().to("cpu", copy=True).contiguous()
        nbytes = shard[name].numel() * shard[name].element_size()
        size += nbytes
        total += nbytes
        if size >= shard_bytes:
            flush()
    flush()
    return total


def image_token_bias(model) -> dict:
    """vLLM sampling settings that keep the image and video placeholder tokens out of completions, as TRL's
    transformers generation does for the image one (`suppress_tokens`); empty for a model without them.

    A completion holding `<|image_pad|>` has more image tokens than images in the loss's forward pass, which then
    fails ("Image features and image tokens do not match"); a barely trained model can sample it.
    """
    config = getattr(model, "config", None)
    token_ids = [getattr(config, name, None) for name in ("image_token_id", "video_token_id")]
    bias = {int(token_id): -100.0 for token_id in token_ids if token_id is not None}
    return {"logit_bias": bias} if bias else {}


class SelfEvolveVLLMGeneration(VLLMGeneration):
    """TRL's `VLLMGeneration` plus `weight_sync="disk"` in server mode and the CPU platform's sync in colocate mode.

    Args:
        weight_sync: `nccl` (TRL's own sync) or `disk`.
        weight_sync_dir: where `disk` writes the weights; the server must be able to read it.
        Other arguments: as TRL's `VLLMGeneration`.
    """

    def __init__(self, *args, weight_sync: str = "nccl", weight_sync_dir: str | None = None, **kwargs):
        if weight_sync not in WEIGHT_SYNCS:
            raise ValueError(f"Unknown vllm_weight_sync {weight_sync!r}; valid: {', '.join(WEIGHT_SYNCS)}.")
        self.weight_sync = weight_sync
        self.weight_sync_dir = weight_sync_dir
        self.weight_sync_count = 0
        self.last_sync_bytes = 0
        self._synced_folder: str | None = None
        super().__init__(*args, **kwargs)
        self.generation_kwargs = {**image_token_bias(self.model), **self.generation_kwargs}

    @property
    def _disk_sync(self) -> bool:
        return self.mode == "server" and self.weight_sync == "disk"

    def _init_vllm(self):
        if not self._disk_sync:
            try:
                return super()._init_vllm()
            except NotImplementedError as error:  # TRL's NCCL weight transfer on a trainer without CUDA
                raise ValueError(
                    f"{error} Set vllm_weight_sync: disk (and vllm_weight_sync_dir to a folder that the server can "
                    "read) to sync the weights through the disk instead of NCCL."
                ) from error
        if self.weight_sync_dir is None:
            raise ValueError("vllm_weight_sync 'disk' needs vllm_weight_sync_dir.")
        if self.accelerator.is_main_process:
            base_url = self.server_base_url or f"http://{self.server_host}:{self.server_port}"
            # No `init_communicator`: the weights travel through the disk, not an NCCL group.
            self.vllm_client = VLLMClient(base_url=base_url, group_port=self.group_port,
                                          connection_timeout=self.server_timeout)
        self.accelerator.wait_for_everyone()

    def sync_weights(self):
        if self._disk_sync:
            self._sync_through_disk()
        elif self.mode == "colocate" and vllm_runs_on_cpu():
            self._sync_colocated_on_cpu()
        else:
            super().sync_weights()
        self.weight_sync_count += 1

    def _sync_through_disk(self):
        folder = os.path.join(self.weight_sync_dir, f"sync-{self.weight_sync_count:06d}")
        if self.accelerator.is_main_process:
            partial = folder + ".partial"
            shutil.rmtree(partial, ignore_errors=True)
            self.last_sync_bytes = write_safetensors_shards(self._iter_named_params(), partial)
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(partial, folder)
            self.vllm_client._post(
                f"{self.vllm_client.base_url}/collective_rpc",
                json={"method": "reload_weights", "kwargs": {"weights_path": os.path.abspath(folder)}},
            )
            # The worker's `reload_weights` drops its encoder outputs but not the scheduler's record of them: without
            # this, the next request with an image seen before the sync kills the engine ("Encoder cache miss").
            response = self.vllm_client.session.post(f"{self.vllm_client.base_url}/reset_encoder_cache")
            if response.status_code != 200:
                raise RuntimeError(f"Resetting the vLLM server's encoder cache failed: {response.status_code}, "
                                   f"{response.text}")
            self.vllm_client.reset_prefix_cache()
            if self._synced_folder and self._synced_folder != folder:
                shutil.rmtree(self._synced_folder, ignore_errors=True)
            self._synced_folder = folder
        else:
            for _ in self._iter_named_params():  # take part in the gather collectives
                pass
        self.accelerator.wait_for_everyone()

    def _sync_colocated_on_cpu(self):
        # Each process drives its own engine in-process, so the iterator reaches `reload_weights` unserialised and
        # every parameter is gathered, loaded and released in turn.
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": self._iter_named_params()})
        self.llm.llm_engine.reset_encoder_cache()  # as in `_sync_through_disk`
        self.llm.reset_prefix_cache()


@contextmanager
def vllm_generation_class(weight_sync: str, weight_sync_dir: str | None):
    """While TRL's trainer is being built, it creates `SelfEvolveVLLMGeneration` where it creates `VLLMGeneration`.

    TRL builds its generation backend inside `GRPOTrainer.__init__` by the class's name in its module and has no hook
    for another class, so that name is swapped for the duration of the constructor only (unless something else
    already replaced TRL's class there).
    """
    from trl.trainer import grpo_trainer  # TRL's trainer module is slow to import; the config imports this module

    original = grpo_trainer.VLLMGeneration
    if original is not VLLMGeneration:  # already replaced (e.g. by a test's stand-in): leave it
        yield
        return
    grpo_trainer.VLLMGeneration = functools.partial(
        SelfEvolveVLLMGeneration, weight_sync=weight_sync, weight_sync_dir=weight_sync_dir
    )
    try:
        yield
    finally:
        grpo_trainer.VLLMGeneration = original
