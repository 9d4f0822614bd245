"""Resume after a crash: the checkpoint to resume from, the weights, our own state, and a real SIGKILL."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from self_evolve_trl.training.checkpoints import (
    COMPLETE_FILE,
    STATE_FILE,
    CheckpointError,
    is_complete_checkpoint,
    latest_checkpoint,
    load_component_states,
    resolve_resume_from_checkpoint,
    save_component_states,
)
from self_evolve_trl.training.guards import NonfiniteCounter
from self_evolve_trl.training.trainer import SelfEvolveGRPOTrainer


REPO_ROOT = Path(__file__).resolve().parents[2]


def make_checkpoint(output_dir: Path, step: int, complete: bool = True) -> Path:
    path = output_dir / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"")
    if complete:
        (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return path


def test_latest_checkpoint_skips_one_cut_short_by_a_kill(tmp_path):
    make_checkpoint(tmp_path, 2)
    four = make_checkpoint(tmp_path, 4)
    make_checkpoint(tmp_path, 10)  # step 10 > 4 numerically, though "checkpoint-10" < "checkpoint-4" as text
    make_checkpoint(tmp_path, 12, complete=False)  # killed while saving: no trainer_state.json
    assert latest_checkpoint(str(tmp_path)) == str(tmp_path / "checkpoint-10")
    (tmp_path / "checkpoint-10" / "trainer_state.json").unlink()
    assert latest_checkpoint(str(tmp_path)) == str(four)
    for value in (True, "true", "last", "latest", "LAST"):
        assert resolve_resume_from_checkpoint(value, str(tmp_path)) == str(four)
    for value in (None, False, "false", "", "none"):
        assert resolve_resume_from_checkpoint(value, str(tmp_path)) is None
    assert resolve_resume_from_checkpoint(str(four), str(tmp_path)) == str(four)


def ours(output_dir: Path, step: int, state: str | None = None, marked: bool = True) -> Path:
    """A checkpoint as this package writes it: our state file, trainer_state.json (`state`, else valid JSON) and, once
    the save has finished, the completion marker."""
    path = make_checkpoint(output_dir, step)
    (path / STATE_FILE.format(rank=0)).write_bytes(b"state")
    if state is not None:
        (path / "trainer_state.json").write_text(state)
    if marked:
        (path / COMPLETE_FILE).write_text(json.dumps({"global_step": step, "world_size": 1}))
    return path


def test_resume_last_skips_a_cut_off_trainer_state_and_an_unfinished_save(tmp_path):
    two = ours(tmp_path, 2)
    four = ours(tmp_path, 4, marked=False)  # killed after trainer_state.json, before the end of the save
    six = ours(tmp_path, 6, state='{"global_step": 6, "log_hist')  # killed while trainer_state.json was written
    assert resolve_resume_from_checkpoint("last", str(tmp_path)) == str(two)
    with pytest.raises(CheckpointError, match=f"{four} is not a complete checkpoint \\(no {COMPLETE_FILE}: its save"):
        resolve_resume_from_checkpoint(str(four), str(tmp_path))
    with pytest.raises(CheckpointError, match=f"{six} is not a complete checkpoint \\(its trainer_state.json does"):
        resolve_resume_from_checkpoint(str(six), str(tmp_path))
    plain = make_checkpoint(tmp_path, 8)  # plain transformers/TRL: no state of ours, no marker
    assert resolve_resume_from_checkpoint("last", str(tmp_path)) == str(plain)
    (plain / "trainer_state.json").write_text("")  # ... whose trainer_state.json must read too
    assert resolve_resume_from_checkpoint("last", str(tmp_path)) == str(two)


def test_resume_values_that_cannot_work(tmp_path):
    assert resolve_resume_from_checkpoint("last", str(tmp_path / "never-run")) is None  # first start of a requeued job
    with pytest.raises(CheckpointError, match="checkpoint folder not found: .*nope"):
        resolve_resume_from_checkpoint(str(tmp_path / "nope"), str(tmp_path))
    partial = make_checkpoint(tmp_path, 3, complete=False)
    with pytest.raises(CheckpointError, match="not a complete checkpoint .*trainer_state.json"):
        resolve_resume_from_checkpoint(str(partial), str(tmp_path))


class Counter:
    """A stateful provider: a running count and an RNG."""

    def __init__(self):
        self.count, self.rng = 0, random.Random(7)

    def state_dict(self):
        return {"count": self.count, "rng": self.rng.getstate()}

    def load_state_dict(self, state):
        self.count, self.rng = state["count"], random.Random()
        self.rng.setstate(state["rng"])


def fake_trainer(rank: int = 0, world_size: int = 1):
    return SimpleNamespace(
        accelerator=SimpleNamespace(process_index=rank, num_processes=world_size),
        nonfinite_counter=NonfiniteCounter(),
        reward_input_providers={"judge_scores": Counter(), "stateless": object(), "module": torch.nn.Linear(1, 1)},
        reward_funcs=[],
    )


def test_component_states_round_trip_per_process(tmp_path):
    saved = fake_trainer(rank=1, world_size=2)
    saved.reward_input_providers["judge_scores"].count = 5
    expected_draw = random.Random(7)
    expected_draw.random()
    saved.reward_input_providers["judge_scores"].rng.random()
    saved.nonfinite_counter.add(rewards=3, advantages=1)
    path = save_component_states(saved, str(tmp_path))
    assert os.path.basename(path) == STATE_FILE.format(rank=1) and not os.path.exists(path + ".tmp")

    restored = fake_trainer(rank=1, world_size=2)
    keys = load_component_states(restored, str(tmp_path))
    assert sorted(keys) == ["nonfinite_counter", "reward_input:judge_scores"]  # no stateless object, no nn.Module
    assert restored.reward_input_providers["judge_scores"].count == 5
    assert restored.reward_input_providers["judge_scores"].rng.random() == expected_draw.random()
    assert restored.nonfinite_counter.state_dict() == {"rewards": 3, "advantages": 1}

    # after a change of process count, a rank without its own file reads rank 0's (here: none -> fresh state)
    other = fake_trainer(rank=3, world_size=4)
    assert load_component_states(other, str(tmp_path)) == []
    assert other.reward_input_providers["judge_scores"].count == 0


def test_resume_loads_the_checkpoint_weights(tiny_model_dir, tiny_processor, synthetic_dataset, cpu_config):
    """Transformers 5.17's own resume load matches no Qwen2.5-VL key (saved as `visual.*`, `model.layers.*`) and
    goes on from the initial weights with a warning; the trainer loads them the way `from_pretrained` does."""
    config = cpu_config(save_strategy="steps", save_steps=2)
    trained = SelfEvolveGRPOTrainer(model=tiny_model_dir, args=config, train_dataset=synthetic_dataset(8), processing_class=tiny_processor)
    trained.train()
    checkpoint = os.path.join(config.output_dir, "checkpoint-2")
    saved_keys = load_file(os.path.join(checkpoint, "model.safetensors")).keys()
    assert any(k.startswith("visual.") for k in saved_keys)  # the layout that transformers' own resume misses

    fresh = SelfEvolveGRPOTrainer(model=tiny_model_dir, args=config, train_dataset=synthetic_dataset(8), processing_class=tiny_processor)
    initial = {n: p.detach().clone() for n, p in fresh.model.named_parameters()}
    fresh._load_from_checkpoint(checkpoint)
    expected = dict(trained.model.named_parameters())
    assert all(torch.equal(p, expected[n]) for n, p in fresh.model.named_parameters())
    assert sum(not torch.equal(p, initial[n]) for n, p in expected.items()) > 50  # training did move them

    # `load_best_model_at_end` reads checkpoints the same way
    best = SelfEvolveGRPOTrainer(model=tiny_model_dir, args=config, train_dataset=synthetic_dataset(8), processing_class=tiny_processor)
    best.state.best_model_checkpoint = checkpoint
    best._load_best_model()
    assert all(torch.equal(p, expected[n]) for n, p in best.model.named_parameters())


def test_a_checkpoint_is_complete_when_its_save_has_finished(tiny_model_dir, tiny_processor, synthetic_dataset,
                                                            cpu_config):
    """The trainer marks each checkpoint complete last; `save_total_limit` removes older ones only after that."""
    config = cpu_config(max_steps=3, save_strategy="steps", save_steps=1, save_total_limit=1)
    trainer = SelfEvolveGRPOTrainer(model=tiny_model_dir, args=config, train_dataset=synthetic_dataset(8),
                                    processing_class=tiny_processor)
    trainer.train()
    output_dir = Path(config.output_dir)
    assert sorted(p.name for p in output_dir.glob("checkpoint-*")) == ["checkpoint-3"]
    three = output_dir / "checkpoint-3"
    assert json.loads((three / COMPLETE_FILE).read_text()) == {"global_step": 3, "world_size": 1}
    assert (three / STATE_FILE.format(rank=0)).exists() and latest_checkpoint(str(output_dir)) == str(three)

    trainer._save_checkpoint(trainer.model_wrapped, trial=None)  # the same step saved again (the judge's stop)
    assert is_complete_checkpoint(str(three)) and not (three / (COMPLETE_FILE + ".tmp")).exists()
    state = (three / "trainer_state.json").read_text()
    (three / "trainer_state.json").write_text(state[: len(state) // 2])  # a kill mid-write
    assert latest_checkpoint(str(output_dir)) is None


PROVIDER_MODULE = '''
"""A stand-in for a judge with running statistics and a perturbation RNG, registered as a reward-input provider."""
import os
import random
import shutil
import time

from self_evolve_trl.training.trainer import REWARD_INPUT_PROVIDERS

REWARD_INPUT_PROVIDERS["draws"] = "stateful_reward:DrawProvider"


class DrawProvider:
    def __init__(self, trainer):
        self.calls = 0  # running statistic: kept across a resume
        self.calls_this_process = 0  # not state: shows where the process started
        self.rng = random.Random(1234)

    def __call__(self, inputs, prompts, completions, completion_ids_list):
        self.calls += 1
        self.calls_this_process += 1
        draw = self.rng.random()
        if os.environ.get("HANG_AT_CALL") == str(self.calls):  # park mid-training until the test kills us
            open(os.environ["HANG_FLAG"], "w").close()
            time.sleep(3600)
        return [(self.calls, self.calls_this_process, draw)] * len(completions)

    def state_dict(self):
        return {"calls": self.calls, "rng": self.rng.getstate()}

    def load_state_dict(self, state):
        self.calls = state["calls"]
        self.rng.setstate(state["rng"])


def draws_reward(completions, draws, log_metric):
    calls, here, draw = draws[0]
    log_metric("test/calls", calls)
    log_metric("test/calls_this_process", here)
    log_metric("test/draw", draw)
    return [0.0] * len(completions)


draws_reward.reward_inputs = ("draws",)
'''

RECIPE = """
model_name_or_path: {model}
dataset_name: synthetic
synthetic_size: 16
instruction: "Answer in \\\\boxed{{}}."
reward_funcs: [soft_frequency, "stateful_reward:draws_reward"]
num_generations: 4
per_device_train_batch_size: 4
max_completion_length: 8
learning_rate: 0.05
max_steps: 6
logging_steps: 1
save_steps: 2
seed: 0
use_cpu: true
bf16: false
gradient_checkpointing: false
dataloader_num_workers: 0
report_to: none
answer_extractor: last_number
"""


def log_steps(output_dir: Path) -> list[dict]:
    state = json.loads((output_dir / "checkpoint-6" / "trainer_state.json").read_text())
    return [entry for entry in state["log_history"] if "reward" in entry]


@pytest.mark.slow
def test_sigkill_mid_training_then_resume_reaches_the_same_end(tmp_path, tiny_model_dir):
    (tmp_path / "stateful_reward.py").write_text(PROVIDER_MODULE)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE.format(model=tiny_model_dir))
    env = {**os.environ, "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{tmp_path}", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "self_evolve_trl.cli", str(recipe)]

    def train(output_dir, *flags, **extra_env):
        return subprocess.run([*command, "--output_dir", str(output_dir), *flags], cwd=tmp_path, env={**env, **extra_env},
                              capture_output=True, text=True, timeout=600)

    uninterrupted = tmp_path / "uninterrupted"
    assert train(uninterrupted).returncode == 0

    # 1. Killed hard while generating for step 5 (steps 1-4 done, checkpoint-4 saved).
    killed = tmp_path / "killed"
    flag = tmp_path / "hanging"
    log = open(tmp_path / "killed.log", "w")
    process = subprocess.Popen([*command, "--output_dir", str(killed)], cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
                               env={**env, "HANG_AT_CALL": "5", "HANG_FLAG": str(flag)})
    try:
        deadline = time.time() + 600
        while not flag.exists() and process.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        assert flag.exists(), (tmp_path / "killed.log").read_text()[-3000:]
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=60) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
        log.close()
    assert sorted(p.name for p in killed.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    assert (killed / "checkpoint-4" / "trainer_state.json").exists()
    assert (killed / "checkpoint-4" / STATE_FILE.format(rank=0)).exists()
    assert (killed / "checkpoint-4" / COMPLETE_FILE).exists()
    assert not (killed / "summary.json").exists() and not (killed / "model.safetensors").exists()

    # 2. The same command with `resume_from_checkpoint: last` finishes the run.
    resumed = train(killed, "--resume_from_checkpoint", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((killed / "checkpoint-6" / "trainer_state.json").read_text())["global_step"] == 6
    assert json.loads((killed / "summary.json").read_text())["steps"] == 6

    steps = log_steps(killed)
    assert [e["step"] for e in steps] == [1, 2, 3, 4, 5, 6]
    assert [e["test/calls"] for e in steps] == [1, 2, 3, 4, 5, 6]  # the provider's running count resumed at 4
    assert [e["test/calls_this_process"] for e in steps] == [1, 2, 3, 4, 1, 2]  # a new process took over at step 5
    rng = random.Random(1234)
    assert [e["test/draw"] for e in steps] == pytest.approx([rng.random() for _ in range(6)])  # its RNG resumed too

    # 3. ... and the run is the uninterrupted one: same metrics every step, same final weights.
    reference = log_steps(uninterrupted)
    for key in ("loss", "reward", "entropy", "grad_norm", "self_consistency/majority_ratio"):
        assert [e[key] for e in steps] == [e[key] for e in reference], key
    final, expected = load_file(killed / "model.safetensors"), load_file(uninterrupted / "model.safetensors")
    assert final.keys() == expected.keys() and all(torch.equal(final[k], expected[k]) for k in final)


def run_then_resume(command: list[str], tmp_path: Path, env: dict, timeout: int = 600) -> tuple[Path, Path]:
    """Runs `command` (4 steps, checkpoints every 2) to the end in `full`, then again in `part` resumed from a copy
    of `full`'s checkpoint-2; returns the two output folders."""
    full, part = tmp_path / "full", tmp_path / "part"
    result = subprocess.run([*command, "--output_dir", str(full)], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    part.mkdir()
    shutil.copytree(full / "checkpoint-2", part / "checkpoint-2")
    result = subprocess.run([*command, "--output_dir", str(part), "--resume_from_checkpoint", "last"], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return full, part


def logged_steps(output_dir: Path) -> list[dict]:
    state = json.loads((output_dir / "checkpoint-4" / "trainer_state.json").read_text())
    return [e for e in state["log_history"] if "reward" in e]


def assert_same_final_weights(output_dir: Path, reference: Path):
    final, expected = load_file(output_dir / "model.safetensors"), load_file(reference / "model.safetensors")
    assert final.keys() == expected.keys() and all(torch.equal(final[k], expected[k]) for k in expected)


def stateful_recipe(tmp_path: Path, tiny_model_dir: str) -> tuple[Path, dict]:
    (tmp_path / "stateful_reward.py").write_text(PROVIDER_MODULE)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE.format(model=tiny_model_dir).replace("max_steps: 6", "max_steps: 4"))
    return recipe, {**os.environ, "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{tmp_path}", "OMP_NUM_THREADS": "1"}


@pytest.mark.slow
def test_deepspeed_zero3_resume_continues_the_run(tmp_path, tiny_model_dir):
    """ZeRO-3 (the multi-node setting, here one CPU process): resumed from checkpoint-2 of a 4-step run, it ends where
    the run itself ended, provider state included."""
    recipe, env = stateful_recipe(tmp_path, tiny_model_dir)
    accelerate = [os.path.join(os.path.dirname(sys.executable), "accelerate"), "launch", "--config_file",
                  str(REPO_ROOT / "accelerate_configs" / "zero3_cpu.yaml"), "-m", "self_evolve_trl.cli", str(recipe)]
    full, part = run_then_resume(accelerate, tmp_path, env, timeout=900)
    assert (full / "checkpoint-2" / "global_step2").is_dir()  # a DeepSpeed checkpoint
    steps = logged_steps(part)
    assert [e["test/calls"] for e in steps] == [1, 2, 3, 4] and [e["test/calls_this_process"] for e in steps][2:] == [1, 2]
    assert_same_final_weights(part, full)


@pytest.mark.slow
def test_two_process_cpu_resume_continues_the_run(tmp_path, tiny_model_dir):
    """`torchrun --nproc_per_node 2` on CPU (gloo): transformers loads the optimizer state with map_location "cpu:0",
    which torch alone cannot restore. Resumed from checkpoint-2 of a 4-step run, it ends where the run itself ended."""
    recipe, env = stateful_recipe(tmp_path, tiny_model_dir)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "self_evolve_trl.cli",
                str(recipe), "--per_device_train_batch_size", "2"]  # each group of 4 split over the 2 processes
    full, part = run_then_resume(torchrun, tmp_path, env)
    assert [e["test/calls_this_process"] for e in logged_steps(part)] == [1, 2, 1, 2]  # new processes at step 3
    for key in ("loss", "reward", "grad_norm", "test/calls", "test/draw"):
        assert [e[key] for e in logged_steps(part)] == [e[key] for e in logged_steps(full)], key
    assert_same_final_weights(part, full)


@pytest.mark.slow
def test_csrs_with_visual_perturbation_resumes_exactly(tmp_path, tiny_model_dir):
    """The built-in CSRS state: its perturbation noise is drawn from (seed, step, completion), so a run resumed from
    checkpoint-2 re-infers from the same noisy images and ends where the run itself ended (rewards, noise levels,
    weights). A noise stream that did not resume would change the noise levels. (The re-inference sampling is drawn
    from (seed, step, completion) only with `reproducible_generation`; here it follows torch's generator, which the
    checkpoint's RNG state restores.)"""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "self_evolve_trl.cli", str(REPO_ROOT / "recipes" / "tiny-cpu-csrs.yaml"),
               "--model_name_or_path", tiny_model_dir, "--max_steps", "4", "--save_steps", "2", "--synthetic_size", "8",
               "--num_generations", "4", "--per_device_train_batch_size", "4", "--max_completion_length", "12"]
    full, part = run_then_resume(command, tmp_path, env)
    assert [e["step"] for e in logged_steps(part)] == [1, 2, 3, 4]
    for key in ("loss", "reward", "retrace/noise_level", "retrace/prefix_length", "retrace/tokens_per_completion",
                "retrace/abstention_rate"):
        assert [e[key] for e in logged_steps(part)] == [e[key] for e in logged_steps(full)], key
    assert [e.get("retrace/agreement") for e in logged_steps(part)] == [e.get("retrace/agreement") for e in logged_steps(full)]
    assert_same_final_weights(part, full)
