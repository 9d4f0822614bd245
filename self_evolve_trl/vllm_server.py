"""A local vLLM server on 127.0.0.1, started with `python -m self_evolve_trl.vllm_serve` and stopped by the caller:
for the tests, the benchmarks, and trying the pipeline on one machine.

```python
server = LocalVLLMServer("path/to/model", "server.log").wait_until_healthy()
...  # vllm_server_port=server.port, or judge_base_url=server.base_url + "/v1"
server.stop()
```
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

# vLLM's CPU settings: 1 GiB of KV cache, one OpenMP thread per process.
CPU_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "OMP_NUM_THREADS": "1", "VLLM_LOGGING_LEVEL": "WARNING"}

PACKAGE_PARENT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalVLLMServer:
    """A vLLM server of `model_dir` in float32, eager mode, with vLLM's development endpoints (weight reload, cache
    resets).

    Args:
        model_dir: the model folder.
        log_path: where the server's output goes.
        extra: more arguments for the server's command line.
        trl_style: `True` starts it as `trl vllm-serve` does (the server a GRPO trainer talks to); `False` as a plain
            `vllm serve` serving the model under the name `served_model_name` (e.g. a judge).
        max_model_len: the context length.
        served_model_name: the model's name for a plain `vllm serve`.
    """

    def __init__(self, model_dir: str, log_path: str | os.PathLike, extra: list[str] | None = None,
                 trl_style: bool = True, max_model_len: int = 2048, served_model_name: str = "tiny-judge"):
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        if trl_style:
            args = ["--model", model_dir, "--host", "127.0.0.1", "--port", str(self.port), "--dtype", "float32",
                    "--enforce_eager", "true", "--max_model_len", str(max_model_len)]
        else:
            args = ["--vllm-cli", "serve", model_dir, "--host", "127.0.0.1", "--port", str(self.port), "--dtype",
                    "float32", "--enforce-eager", "--max-model-len", str(max_model_len), "--served-model-name",
                    served_model_name]
        self.log_path = Path(log_path)
        self.log = open(self.log_path, "w")
        env = {**os.environ, "PYTHONPATH": str(PACKAGE_PARENT), "VLLM_SERVER_DEV_MODE": "1", **CPU_ENV}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "self_evolve_trl.vllm_serve", *args, *(extra or [])], cwd=PACKAGE_PARENT,
            env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def wait_until_healthy(self, timeout: float = 420) -> "LocalVLLMServer":
        """Wait until `/health` answers 200; raises with the end of the server's log if it exits or times out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"vLLM server exited ({self.process.returncode}):\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/health", timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(1)
        self.stop()
        raise TimeoutError(f"vLLM server not healthy after {timeout} s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text()[-chars:]

    def stop(self) -> None:
        """Stop the server and its engine processes (SIGTERM, then SIGKILL after 30 s)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()
