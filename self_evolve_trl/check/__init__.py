"""Check a recipe before spending GPU hours:

    python -m self_evolve_trl.cli check RECIPE.yaml [--num_processes N] [--rows N|all] [--timeout S] [--field value ...]

(or `--dry-run` on the training command).

Every problem is reported at once, each with its fix; nothing is trained and no weights are loaded. Checked:

- fields: unknown keys (with the nearest valid name), values of the wrong type, values outside a field's choices;
  a command-line flag that cannot be parsed is reported and left out, the other flags keep their values;
- rewards: names, keyword arguments, weights, and a provider for every extra input a reward needs;
- the batch geometry: per-device batch × processes × steps per generation must hold whole groups of
  `num_generations` (for the process count given with `--num_processes`, default `$WORLD_SIZE` or 1);
- every problem that the config's own rules find (`SelfEvolveConfig.validation_problems`: rewards, answers, the
  advantage settings and which of them combine, bad rows, CSRS, judge and vLLM settings), exactly as the config
  reports them, then the whole config as the trainer will build it (whatever TRL and transformers reject);
- the dataset: its columns, enough rows for one generation round, and the first rows read and their images decoded
  (`--rows all`: every row, in parallel with a progress bar; each unreadable row listed, a warning where
  `on_bad_row: skip` would skip it in training);
- the model: its config and processor load (not the weights), and a local model folder has weight files;
- the vLLM server (`use_vllm` with `vllm_mode: server`) and the judge endpoint, when configured, answer an HTTP GET;
- `resume_from_checkpoint` and `output_dir`.

The exit status is 0 when the recipe is clean (warnings allowed), 2 when there is any problem.

Modules: `rewards.py` (the reward functions resolve, with providers), `geometry.py` (batch geometry, TRL's own
checks), `environment.py` (dataset, model files, endpoints, output_dir); reading the recipe is `recipe.py`'s.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from ..errors import Problem
from ..recipe import PARSER_KEYS, field_problems, load_recipe, parse_raw, without_stale_reward_settings
from .environment import (
    ALL_ROWS,
    FIRST_ROWS,
    dataset_problems,
    endpoint_problems,
    first_row_problems,
    model_problems,
    output_dir_problems,
    output_problems,
)
from .geometry import Geometry, batch_problems, config_build_problems
from .rewards import reward_function_problems, reward_problems

__all__ = [
    "ALL_ROWS", "FIRST_ROWS", "CheckReport", "Geometry", "batch_problems", "check_recipe", "config_build_problems",
    "dataset_problems", "endpoint_problems", "first_row_problems", "main", "model_problems", "output_dir_problems",
    "output_problems", "reward_function_problems", "reward_problems",
]


@dataclass
class CheckReport:
    """The problems found in a recipe, checked for a number of processes, and what was checked."""

    recipe: str
    num_processes: int
    problems: list[Problem]
    checked: list[str]

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if not p.warning]

    def format(self) -> str:
        lines = [f"Checked {self.recipe} for {self.num_processes} process(es): {', '.join(self.checked)}."]
        for problem in self.problems:
            lines.append(f"  {'warning' if problem.warning else 'problem'}: {problem}")
        errors = len(self.errors)
        lines.append(f"{errors} problem(s)." if errors else "No problems: the recipe is ready to train.")
        return "\n".join(lines)


def check_recipe(recipe: str, overrides: list[str] = (), num_processes: int | None = None, rows: int = 8,
                 timeout: float = 3.0) -> CheckReport:
    """Check a recipe (and command-line overrides) without training; return every problem found."""
    import datasets  # datasets, trl and torch are slow to import: only when a check runs

    from ..training.config import SelfEvolveConfig

    datasets.disable_progress_bars()
    num_processes = num_processes or int(os.environ.get("WORLD_SIZE", "1"))
    try:
        content = load_recipe(recipe)
    except ValueError as error:
        return CheckReport(recipe, num_processes, [Problem("recipe", str(error), "fix the YAML syntax there.")], ["YAML"])
    content, dropped = without_stale_reward_settings(content, list(overrides))  # as training reads --reward_funcs
    problems = field_problems(content)
    if dropped:
        problems.append(Problem("reward_funcs", dropped, "nothing, if that is what you meant.", warning=True))
    bad_keys = {p.area for p in problems}
    (data_args, args, model_args), parse_problems = parse_raw(
        {k: v for k, v in content.items() if k not in bad_keys and k not in PARSER_KEYS}, list(overrides)
    )
    problems += parse_problems
    problems += SelfEvolveConfig.validation_problems(args, reward_function_problems)
    geometry, batch = batch_problems(args, num_processes)
    problems += batch
    problems += config_build_problems(args, num_processes, batch_reported=any(not p.warning for p in batch))
    problems += dataset_problems(data_args, args, geometry, rows)
    problems += model_problems(model_args, data_args)
    problems += endpoint_problems(args, timeout)
    problems += output_problems(args)
    read = "every row" if rows == ALL_ROWS else f"first {rows} rows"
    checked = ["fields", "rewards", "advantages", "batch geometry", "config", f"dataset ({read})",
               "model config and processor", "endpoints", "output_dir"]
    return CheckReport(recipe, num_processes, problems, checked)


def main(argv: list[str]) -> int:
    """`check RECIPE.yaml [--num_processes N] [--rows N|all] [--timeout S] [--field value ...]`; exit 0 clean, 2 otherwise."""
    argv = list(argv)
    options = {"--num_processes": None, "--rows": 8, "--timeout": 3.0}
    for option, default in list(options.items()):
        for spelling in (option, option.replace("_", "-")):
            if spelling in argv:
                i = argv.index(spelling)
                try:
                    value = argv[i + 1]
                    all_rows = option == "--rows" and value == "all"
                    options[option] = ALL_ROWS if all_rows else type(default or 1)(value)
                except (IndexError, ValueError):
                    print(f"error: {spelling} needs a number{' or all' if option == '--rows' else ''}.", file=sys.stderr)
                    return 2
                del argv[i : i + 2]
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__.strip())
        return 0
    if not argv or argv[0].startswith("-"):
        print("error: usage: python -m self_evolve_trl.cli check RECIPE.yaml [--num_processes N] [--field value ...]",
              file=sys.stderr)
        return 2
    report = check_recipe(argv[0], argv[1:], options["--num_processes"], options["--rows"], options["--timeout"])
    print(report.format())
    return 2 if report.errors else 0
