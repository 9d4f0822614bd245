"""TTRL's extra votes through TRL's own vLLM server generation, with CSRS's stand-in for TRL's vLLM client
(`FakeVLLMClient`), on one and two processes.

Run as a script (`torchrun ... tests/ttrl/test_ttrl_fake_vllm.py RECIPE FLAGS...`), it trains through TRL's own vLLM
generation with `FakeVLLMClient`.
"""

import sys

import pytest

from self_evolve_trl.ttrl import ttrl_vote
from tests.csrs.test_csrs_fake_vllm import run_with_fake_vllm_client, train_with_fake_vllm_client


def run_with_ttrl_recipe(run, python, model_dir, output_dir, nproc):
    return run_with_fake_vllm_client(run, python, model_dir, output_dir, nproc, recipe="recipes/tiny-cpu-ttrl.yaml",
                                     extra=["--vote_samples", "8"], script=__file__)


@pytest.mark.slow
def test_extra_votes_through_trls_vllm_server_generation_on_two_processes(run, python, tiny_model_dir, tmp_path):
    """Every process takes part in every generation round (the extra votes too: each process draws as many), the
    server gets each completion's prompt once with n = M / G, and 2 processes give the rewards of 1."""
    one_logs, one = run_with_ttrl_recipe(run, python, tiny_model_dir, tmp_path / "one", 1)
    two_logs, two = run_with_ttrl_recipe(run, python, tiny_model_dir, tmp_path / "two", 2)
    # per step: the rollout (the process's rows, n = G = 4), then the extra votes (each row's prompt twice, n = 2)
    assert one_logs[0]["rounds"] == [[4, 4], [8, 2]] * 2
    assert two_logs[0]["rounds"] == two_logs[1]["rounds"] == [[2, 4], [4, 2]] * 2
    for logs in (one_logs, two_logs):
        calls = logs[0]["client"][2:]
        steps = [c[0] if c[0] != "generate" else tuple(c[1:3]) for c in calls]
        assert steps == ["update_named_params", "reset_prefix_cache", (1, 4), (4, 2)] * 2  # M = 8 samples a prompt
    assert one_logs[0]["client"][2:] == two_logs[0]["client"][2:]  # the same requests and answers
    for a, b in zip(one, two):
        assert len(a) == len(b) == 4
        for column in ("completion", "answer", "vote_answers", "vote_majority", "ttrl_vote"):
            assert list(a[column].astype(str)) == list(b[column].astype(str)), column
        assert list(a["answer"]) == ["1", "1", "2", ""]
        votes = [[f"\\boxed{{{x}}}" for x in answers.split(" | ")] for answers in a["vote_answers"]]
        assert all(len(v) == 2 for v in votes)
        expected = ttrl_vote([f"\\boxed{{{x}}}" if x else "none" for x in a["answer"]], 4, votes)
        assert a["ttrl_vote"].tolist() == expected


if __name__ == "__main__":  # torchrun --nproc_per_node N tests/ttrl/test_ttrl_fake_vllm.py RECIPE FLAGS...
    sys.exit(train_with_fake_vllm_client(sys.argv[1:]))
