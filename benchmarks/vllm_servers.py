"""Real vLLM servers for the benchmarks: started with `python -m self_evolve_trl.vllm_serve`, stopped by the caller."""

from __future__ import annotations

import os
import urllib.request

from self_evolve_trl.vllm_server import CPU_ENV, LocalVLLMServer


def server_env() -> dict[str, str]:
    """vLLM's CPU settings (1 GiB of KV cache, one OpenMP thread)."""
    return dict(CPU_ENV)


class VLLMServer(LocalVLLMServer):
    """The package's local server with a 4096-token context, its log in `log_dir/NAME.log`."""

    def __init__(self, model_dir: str, log_dir: str, name: str, extra: list[str] | None = None, trl_style: bool = True):
        super().__init__(model_dir, os.path.join(log_dir, f"{name}.log"), extra, trl_style, max_model_len=4096)


def prefix_cache_counts(base_url: str) -> tuple[float, float]:
    """(hits, queries) of the server's prefix cache, in prompt tokens, from its Prometheus metrics."""
    with urllib.request.urlopen(f"{base_url}/metrics", timeout=10) as response:
        text = response.read().decode()
    counts = {"vllm:prefix_cache_hits_total": 0.0, "vllm:prefix_cache_queries_total": 0.0}
    for line in text.splitlines():
        name = line.split("{")[0].split(" ")[0]
        if name in counts:
            counts[name] += float(line.rsplit(" ", 1)[1])
    return counts["vllm:prefix_cache_hits_total"], counts["vllm:prefix_cache_queries_total"]
