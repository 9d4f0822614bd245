"""CSRS through TRL's own vLLM server generation, with a stand-in for TRL's vLLM client (`FakeVLLMClient`), on one
and two processes.

Run as a script (`torchrun ... tests/csrs/test_csrs_fake_vllm.py RECIPE FLAGS...`), it trains through TRL's own vLLM
generation with `FakeVLLMClient`.
"""

import json
import os
import sys
import zlib
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from tests.csrs.test_csrs_reward import expected_reward
from tests.conftest import launcher


class FakeVLLMClient:
    """Stand-in for TRL's `VLLMClient`, the HTTP client of a vLLM server, under TRL's own `VLLMGeneration`: the one
    stand-in of the vLLM path, for what cannot run on a CPU, the NCCL weight transfer (`init_communicator`,
    `update_named_params`). tests/vllm/test_vllm_server_mode.py runs the same path against a real vLLM server with the
    disk sync; this one keeps the NCCL sync's calls in the test, and answers chosen so that the rewards can be
    checked by hand. TRL's server-mode code runs: the gather of every process's
    prompts and images to the main process, the image features placed on the image tokens, one call with n
    completions per distinct prompt, the broadcast of the results and each process's slice. Answers are a function
    of what is sent: a rollout (n = G) answers 1, 1, 2 and nothing in turn; a re-inference answers a digit made of its
    prompt's tokens and a hash of its image's pixels, so a process given another's rows, or other noise, changes the
    rewards.
    """

    tokenizer = None  # set by `train_with_fake_vllm_client`
    group_size = 4
    log: list = []

    def __init__(self, base_url=None, group_port=51216, connection_timeout=0.0):
        self.log.append(["connect", base_url])

    def get_server_info(self):
        return {"model_config": {"logprobs_mode": "processed_logprobs"}, "weight_transfer_config": {"backend": "nccl"}}

    def init_communicator(self, device=0):
        self.log.append(["init_communicator", str(device)])

    def update_named_params(self, metadata, named_params):
        tensors = sum(1 for _ in named_params)
        assert tensors == len(metadata) > 0
        self.log.append(["update_named_params", tensors])

    def reset_prefix_cache(self):
        self.log.append(["reset_prefix_cache"])

    def close_communicator(self):
        pass

    def image_features(self, images):
        return [
            None if not prompt_images else {
                "mm_placeholders": {"image": [{"offset": 0, "length": 0}] * len(prompt_images)},
                "pixel_hash": sum(zlib.crc32(image.tobytes()) for image in prompt_images),
            }
            for prompt_images in images
        ]

    def generate(self, prompts, features=None, n=1, max_tokens=16, **sampling):
        image_token = self.tokenizer.convert_tokens_to_ids("<|image_pad|>")
        for ids, feature in zip(prompts, features or [None] * len(prompts)):  # TRL placed the images on their tokens
            assert feature and all(ids[p["offset"]] == image_token for p in feature["mm_placeholders"]["image"])
        texts = []
        for ids, feature in zip(prompts, features):
            for j in range(n):
                if n == self.group_size:  # a rollout
                    answer = ("1", "1", "2", None)[j]
                    texts.append(f"<think>a</think> \\boxed{{{answer}}}" if answer else "<think>a</think> no answer")
                else:
                    # + j²: the K answers of a prefix are not a permutation of {0, 1, 2}, so the counts c differ
                    texts.append(f"\\boxed{{{(sum(ids) + feature['pixel_hash'] + j * j) % 3}}}")
        completions = [self.tokenizer.encode(t)[: max_tokens - 1] + [self.tokenizer.eos_token_id] for t in texts]
        self.log.append(["generate", len(prompts), n, texts])
        return {
            "prompt_ids": list(prompts),
            "completion_ids": completions,
            "logprobs": [[[-0.5]] * len(c) for c in completions],
            "logprob_token_ids": [[[t] for t in c] for c in completions],
        }


def train_with_fake_vllm_client(argv: list[str]) -> int:
    """The CLI on `argv`, with TRL's vLLM client replaced by `FakeVLLMClient`; each process writes the generation
    rounds it took part in (and the main process the client's calls) to $FAKE_VLLM_LOG_DIR/rank<r>.json."""
    import trl.generation.vllm_generation as vllm_generation
    from transformers import AutoTokenizer

    from self_evolve_trl import cli

    FakeVLLMClient.tokenizer = AutoTokenizer.from_pretrained(argv[argv.index("--model_name_or_path") + 1])
    vllm_generation.is_vllm_available = lambda *args, **kwargs: True  # vLLM itself is never reached, only the client
    vllm_generation.VLLMClient = FakeVLLMClient
    rounds = []
    generate = vllm_generation.VLLMGeneration.generate

    def counted(self, prompts, images, num_generations, profiler=None):
        rounds.append([len(prompts), num_generations])
        return generate(self, prompts, images, num_generations, profiler)

    vllm_generation.VLLMGeneration.generate = counted
    code = cli.main(argv)
    rank = int(os.environ.get("RANK", "0"))
    log = {"rounds": rounds, "client": FakeVLLMClient.log}
    Path(os.environ["FAKE_VLLM_LOG_DIR"], f"rank{rank}.json").write_text(json.dumps(log))
    return code


def run_with_fake_vllm_client(run, python, model_dir, output_dir, nproc, recipe="recipes/tiny-cpu-csrs.yaml",
                              extra=(), script=__file__):
    """Two steps of `recipe` in vLLM server mode on `nproc` processes, through `script` (which trains with the fake
    client); returns each rank's client log and the completion tables of both steps."""
    args = [recipe, "--model_name_or_path", model_dir, "--use_vllm", "true",
            "--vllm_mode", "server", "--max_steps", "2", "--output_dir", str(output_dir), "--log_completions", "true",
            "--save_strategy", "no", "--num_generations", "4", "--per_device_train_batch_size", str(4 // nproc),
            "--max_completion_length", "12", "--synthetic_size", "8", *extra]
    log_dir = output_dir.parent / f"vllm-log-{nproc}"
    log_dir.mkdir()
    env = {"SELF_EVOLVE_TRL_CACHE": str(output_dir.parent / "cache"), "FAKE_VLLM_LOG_DIR": str(log_dir)}
    result = run([*launcher(python, nproc), str(Path(script).resolve()), *args], env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    logs = [json.loads((log_dir / f"rank{r}.json").read_text()) for r in range(nproc)]
    tables = [pd.read_parquet(output_dir / "completions" / f"completions_{s:05d}.parquet") for s in (1, 2)]
    return logs, tables


@pytest.mark.slow
def test_trls_vllm_server_generation_with_reinference_on_two_processes(run, python, tiny_model_dir, tmp_path):
    """TRL's own `VLLMGeneration` (server mode) on a fake client: every process takes part in every generation
    round (TRL's gather and broadcast are collective), and 2 processes give the rewards of 1."""
    one_logs, one = run_with_fake_vllm_client(run, python, tiny_model_dir, tmp_path / "one", 1)
    two_logs, two = run_with_fake_vllm_client(run, python, tiny_model_dir, tmp_path / "two", 2)
    # per step: the rollout (the process's rows, n = G), then the re-inference (its completions × K = 3, n = K)
    assert one_logs[0]["rounds"] == [[4, 4], [12, 3]] * 2
    assert two_logs[0]["rounds"] == two_logs[1]["rounds"] == [[2, 4], [6, 3]] * 2
    assert two_logs[1]["client"] == []  # only the main process talks to the server
    for logs in (one_logs, two_logs):
        calls = logs[0]["client"]
        assert [c[0] for c in calls[:2]] == ["connect", "init_communicator"]
        # each step: one weight sync, then the server sees 1 distinct prompt (n = 4) and 4 prefixes (n = 3)
        steps = [[c[0] if c[0] != "generate" else tuple(c[1:3]) for c in calls[2:]]]
        assert steps == [["update_named_params", "reset_prefix_cache", (1, 4), (4, 3)] * 2]
    assert one_logs[0]["client"][2:] == two_logs[0]["client"][2:]  # the same requests and answers
    rewards = set()
    for a, b in zip(one, two):
        assert len(a) == len(b) == 4
        for column in ("completion", "answer", "retrace_answers", "retrace_frequency"):
            assert list(a[column].astype(str)) == list(b[column].astype(str)), column
        assert list(a["answer"]) == ["1", "1", "2", ""]
        retraced = Counter(x for answers in a["retrace_answers"] for x in answers.split(" | "))
        expected = [expected_reward(retraced[answer] if answer else 0, 4, 3, fmt=answer != "")
                    for answer in a["answer"]]
        assert a["retrace_frequency"].tolist() == pytest.approx(expected)
        rewards |= set(a["retrace_frequency"])
    assert len(rewards) > 2  # answers 1 and 2 got different counts: the comparison means something


if __name__ == "__main__":  # torchrun --nproc_per_node N tests/csrs/test_csrs_fake_vllm.py RECIPE FLAGS...
    sys.exit(train_with_fake_vllm_client(sys.argv[1:]))
