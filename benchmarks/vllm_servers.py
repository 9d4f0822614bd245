"""Real vLLM servers for the benchmarks: started with `python -m self_evolve_trl.vllm_serve`, stopped by the caller."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def server_env() -> dict[str, str]:
    """vLLM's CPU settings (1 GiB of KV cache, one OpenMP thread)."""
    return {"VLLM_CPU_KVCACHE_SPACE": "1", "OMP_NUM_THREADS": "1", "VLLM_LOGGING_LEVEL": "WARNING"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class VLLMServer:
    """A `trl vllm-serve` server (`trl_style`) or a plain `vllm serve` one serving the model as `tiny-judge`, on
    127.0.0.1, float32, eager, 4096-token context, with the development endpoints (weight reload, cache reset)."""

    def __init__(self, model_dir: str, log_dir: str, name: str, extra: list[str] | None = None, trl_style: bool = True):
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        if trl_style:
            args = ["--model", model_dir, "--host", "127.0.0.1", "--port", str(self.port), "--dtype", "float32",
                    "--enforce_eager", "true", "--max_model_len", "4096"]
        else:
            args = ["--vllm-cli", "serve", model_dir, "--host", "127.0.0.1", "--port", str(self.port), "--dtype",
                    "float32", "--enforce-eager", "--max-model-len", "4096", "--served-model-name", "tiny-judge"]
        self.log_path = os.path.join(log_dir, f"{name}.log")
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "self_evolve_trl.vllm_serve", *args, *(extra or [])], cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO), "VLLM_SERVER_DEV_MODE": "1", **server_env()},
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def wait_until_healthy(self, timeout: float = 420) -> "VLLMServer":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"vLLM server exited ({self.process.returncode}):\n{self._log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/health", timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(1)
        self.stop()
        raise TimeoutError(f"vLLM server not healthy after {timeout} s:\n{self._log_tail()}")

    def _log_tail(self) -> str:
        with open(self.log_path) as file:
            return file.read()[-4000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


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
