"""Every script under `benchmarks/` runs at a small size and prints its figures last, so none rots silently.

The figures themselves are measured by hand (BENCHMARKS.md); here only that each script runs end to end on the tiny
model and that its last lines carry the quantities BENCHMARKS.md quotes. `self_evolution_toy.py` has its own test.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run_benchmark(name: str, *args: str, timeout: int = 600) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / name), *args], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


@pytest.mark.parametrize("script, args, last_lines", [
    ("overhead.py", ["--steps", "2", "--warmup", "0", "--dataset-size", "16"],
     ["ratio soft_frequency+lse / stock:", "ratio majority_vote+grpo / stock:"]),
    ("judge_cost.py", ["--steps", "1", "--warmup", "0", "--generations", "4", "--max_completion_length", "8",
                       "--judge_max_tokens", "8"],
     ["judge cost / actor generation per step: median"]),
    ("retrace_cost.py", ["--rounds", "1", "--steps", "2", "--samples", "1", "--generations", "4",
                         "--max_completion_length", "8"],
     ["re-inference share"]),
    ("certainty_cost.py", ["--rounds", "1", "--steps", "2", "--generations", "4", "--max_completion_length", "8"],
     ["pass share s"]),
    ("ttrl_cost.py", ["--rounds", "1", "--steps", "2", "--generations", "4", "--max_completion_length", "8"],
     ["extra-vote share of the M = G step:"]),
    ("profile_step.py", ["--steps", "1"], ["training_step (all of the above but optimizer)"]),
    ("answer_matching.py", ["--prompts", "16", "--repeats", "1"],
     ["ratio ours / released:", "lost equivalences vs brute-force math-verify: 0", "against the values spelled: split 0 of ",
      "same-value pairs, merged 0 of "]),
    ("gather_payload.py", ["--completions", "8", "--tokens", "16"], [" MB   dumps "]),
    ("lse_offset.py", ["--groups", "4", "--prompts", "2", "--max-new-tokens", "6"],
     ["loss dapo:", "z = ||difference|| / MC error =", "ratio none / log_group_size ="]),
])
def test_benchmark_runs_and_prints_its_figures_last(script, args, last_lines):
    out = run_benchmark(script, *args)
    tail = "\n".join(out.strip().splitlines()[-8:])
    for text in last_lines:
        assert text in tail, f"{script}: {text!r} not in its last lines:\n{tail}"


@pytest.mark.vllm
def test_vllm_disk_sync_benchmark_writes_every_parameter_once():
    """`vllm_paths.py`'s sync part against two real servers (the `vllm` preset and a larger config): each sync writes
    parameters x 4 bytes (float32), and the 7B figure is printed with its formula."""
    out = run_benchmark("vllm_paths.py", "--parts", "sync", "--sync_sizes", "h256-l4", "--syncs", "1")
    tail = out.strip().splitlines()
    rows = {line.split()[0]: line.split() for line in tail if line.strip().startswith(("vllm ", "h256-l4 "))}
    assert set(rows) == {"vllm", "h256-l4"}, "\n".join(tail[-12:])
    for name, fields in rows.items():
        parameters, megabytes = int(fields[1].replace(",", "")), float(fields[2].removesuffix("MB"))
        assert abs(megabytes - parameters * 4 / 1e6) < 0.05, (name, parameters, megabytes)
    assert int(rows["h256-l4"][1].replace(",", "")) > 5 * int(rows["vllm"][1].replace(",", ""))
    assert any("on paper, Qwen2.5-VL-7B (8.29e9 parameters, bf16): 16.58 GB written" in line for line in tail[-4:])
