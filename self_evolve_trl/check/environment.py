"""What a recipe needs from its environment: the dataset and its rows, the model's files, the endpoints it names,
and the output folder.

The training stack, transformers, safetensors and requests are imported inside the checks that need them, so that
the command line starts without them."""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

from ..errors import Problem
from .geometry import Geometry

# `--rows all`: every row of the dataset is read; the first FIRST_ROWS are read by training before it starts.
ALL_ROWS = -1
FIRST_ROWS = 8


def first_row_problems(dataset, rows: int) -> list[Problem]:
    """Read the first `rows` rows (decoding and resizing their images); one problem per row that cannot be read.

    (In training such a row would be skipped; unreadable first rows rather mean a wrong image_column or folder.)"""
    from ..data import SKIPPED_COLUMN

    problems = []
    for i in range(min(rows, len(dataset))):
        try:
            row = dataset[i]
        except Exception as error:
            message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            problems.append(Problem(f"dataset row {i}", message, "fix or remove that row (and its image file)."))
            continue
        for index, reason in row.get(SKIPPED_COLUMN) or []:
            if index == i:
                problems.append(Problem(f"dataset row {i}", reason, "fix or remove that row (and its image file)."))
    return problems


def all_row_problems(dataset, args) -> list[Problem]:
    """Every row read (`--rows all`); one problem per unreadable row. With `on_bad_row: skip`, rows beyond the first
    8 (which training reads before it starts) are warnings, unless more than `max_bad_row_share` of them are bad."""
    from ..training.badrows import scan_rows

    bad = scan_rows(dataset)
    policy, limit = getattr(args, "on_bad_row", "stop"), getattr(args, "max_bad_row_share", 0.0)
    too_many = len(bad) > limit * len(dataset)
    problems = [
        Problem(f"dataset row {index}", reason, "fix or remove that row (and its image file).",
                warning=policy == "skip" and index >= FIRST_ROWS and not too_many)
        for index, reason in sorted(bad.items())
    ]
    if bad and policy == "skip" and too_many:
        problems.append(Problem("dataset", f"{len(bad)} of {len(dataset)} rows cannot be read, more than "
                                f"max_bad_row_share {limit}: training would stop.", "fix or remove those rows."))
    return problems


def dataset_problems(data_args, args, geometry: Geometry | None, rows: int) -> list[Problem]:
    from ..data.arguments import data_setting_problems
    from ..data import DataError
    from ..data.images import ImageError
    from ..training.datasets import benchmark_name, recipe_dataset

    bad_settings = data_setting_problems(data_args)  # the data settings' own rule (the raw recipe skipped it)
    if bad_settings:
        return [Problem("dataset", problem.line, problem.fix) for problem in bad_settings]
    try:
        dataset = recipe_dataset(data_args, args.label_column)
    except (DataError, ImageError) as error:
        if benchmark_name(data_args.dataset_name) is not None:
            return [Problem("dataset", str(error), "name a benchmark of the evaluation command, its split(s) in "
                            "dataset_split, and its local copy in benchmark_data_dir (DIR/NAME, as eval's --data-dir).")]
        return [Problem("dataset", str(error), "point dataset_name at a readable dataset and set question_column / "
                        "image_column / answer_column to its columns.")]
    problems = []
    if geometry is not None and len(dataset) < geometry.prompts_per_round:
        problems.append(Problem(
            "dataset", f"has {len(dataset)} rows; one generation round needs {geometry.prompts_per_round} prompts "
            f"({geometry.generation_batch_size} completions / num_generations {geometry.num_generations}).",
            "use more data or a smaller per_device_train_batch_size / steps_per_generation."))
    return problems + (all_row_problems(dataset, args) if rows == ALL_ROWS else first_row_problems(dataset, rows))


WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json",
                "adapter_model.safetensors", "adapter_model.bin")


def text_only_data(data_args) -> bool:
    """Whether the recipe's data settings say the rows are text only (`image_column: none`, a text synthetic task)."""
    from ..data import SYNTHETIC  # the data package (PIL, datasets helpers): imported when a check runs
    from ..data.synthetic import TEXT_TASKS

    if data_args.dataset_name == SYNTHETIC:
        return data_args.synthetic_task in TEXT_TASKS
    return (data_args.image_column or "").lower() == "none"


def model_problems(model_args, data_args) -> list[Problem]:
    from transformers import AutoConfig

    from ..errors import UsageError
    from ..recipe import load_processor, resolve_model_path

    name = model_args.model_name_or_path
    if not name:
        return [Problem("model_name_or_path", "is not set.", "give a model folder, a hub id, or `tiny:qwen2.5-vl`.")]
    try:
        path = resolve_model_path(name)
    except (UsageError, ValueError) as error:
        return [Problem("model_name_or_path", str(error), "give an existing model folder, a hub id, or `tiny:qwen2.5-vl`.")]
    problems = []
    offline_fix = ("check the name; without network, download the model first (`hf download ...`) and give its folder.")
    try:
        config = AutoConfig.from_pretrained(
            path, revision=model_args.model_revision, trust_remote_code=getattr(model_args, "trust_remote_code", False)
        )
    except Exception as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return [Problem("model", f"cannot load the config of {path!r}: {message}", offline_fix)]
    if getattr(config, "vision_config", None) is None and not text_only_data(data_args):
        problems.append(Problem(
            "model", f"{path!r} ({config.model_type}) has no vision config: a text-only model, which trains on "
            "text-only rows only (a row with images stops the run).",
            "for data with images, use a vision-language model such as Qwen/Qwen2.5-VL-7B-Instruct.", warning=True))
    try:
        load_processor(path, data_args, model_args)
    except UsageError as error:
        problems.append(Problem("processor", str(error), offline_fix))
    if os.path.isdir(path) and not any(os.path.exists(os.path.join(path, f)) for f in WEIGHT_FILES):
        problems.append(Problem("model", f"folder {path} has no weight files ({', '.join(WEIGHT_FILES[:2])}, ...).",
                                "point model_name_or_path at a complete model folder."))
    elif os.path.isdir(path):
        problems += safetensors_problems(path)
    return problems


def safetensors_problems(folder: str) -> list[Problem]:
    """Weight files whose header cannot be read or that are shorter than it says (a cut-off download or copy).

    Only the headers are read, not the weights."""
    from safetensors import SafetensorError, safe_open

    problems = []
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".safetensors"):
            continue
        try:
            with safe_open(os.path.join(folder, name), framework="pt"):
                pass
        except (SafetensorError, OSError) as error:
            problems.append(Problem("model", f"weight file {os.path.join(folder, name)} is unreadable ({error}).",
                                    "download or copy the model again."))
    return problems


def http_problem(area: str, url: str, timeout: float, healthy_only: bool, fix: str, shown=str) -> Problem | None:
    """None if `url` answers a GET within `timeout` seconds (any status, or only 2xx when `healthy_only`); the
    problem shows the URL as `shown` writes it."""
    import requests

    try:
        response = requests.get(url, timeout=timeout)
    except requests.RequestException as error:
        return Problem(area, f"{shown(url)} is not reachable ({type(error).__name__}).", fix)
    if response.status_code >= (300 if healthy_only else 500):
        return Problem(area, f"{shown(url)} answered HTTP {response.status_code}.", fix)
    return None


def _join_url(base: str, path: str) -> str:
    """`base` with `/path` added to its path (its query string kept)."""

    parts = urlsplit(base)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/" + path))


def endpoint_problems(args, timeout: float) -> list[Problem]:
    problems = []
    if args.use_vllm and args.vllm_mode == "server":
        base = args.vllm_server_base_url or f"http://{args.vllm_server_host}:{args.vllm_server_port}"
        problem = http_problem(
            "vllm server", f"{base.rstrip('/')}/health", timeout, healthy_only=True,
            fix=f"start it first (`trl vllm-serve --model MODEL --port {args.vllm_server_port}` on its own GPUs) or "
                "fix vllm_server_host / vllm_server_port / vllm_server_base_url.")
        if problem:
            problems.append(problem)
        if args.vllm_weight_sync == "nccl" and args.use_cpu:  # (`check` may run on a node without the GPUs)
            problems.append(Problem(
                "vllm_weight_sync", "'nccl' streams the weights to the server over NCCL, which needs CUDA on the "
                "trainer; this trainer runs on the CPU.", "set vllm_weight_sync: disk (the server reloads the weights "
                "from vllm_weight_sync_dir)."))
    judge_url = getattr(args, "judge_base_url", None)  # fields of the judge, where that feature is installed
    if judge_url and getattr(args, "judge_backend", None) == "openai":  # the `reference` judge has no endpoint
        from ..judge.backends.openai import redacted_url

        problem = http_problem(
            "judge (openai)", _join_url(judge_url, "models"), timeout, healthy_only=False, shown=redacted_url,
            fix="start the judge server (an OpenAI-compatible endpoint, e.g. `vllm serve JUDGE_MODEL`) or fix judge_base_url.")
        if problem:
            problems.append(problem)
    return problems


def output_dir_problems(output_dir: str) -> list[Problem]:
    """Whether `output_dir` can be made and written: the folder, or the nearest one above it that exists."""
    existing = os.path.abspath(os.path.expanduser(output_dir or "."))
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        return [Problem("output_dir", f"{existing} is a file, not a folder.", "choose another output_dir.")]
    if not os.access(existing, os.W_OK):
        return [Problem("output_dir", f"{existing} is not writable.", "choose an output_dir you can write to.")]
    return []


def output_problems(args) -> list[Problem]:
    from ..training.checkpoints import CheckpointError, latest_checkpoint, resolve_resume_from_checkpoint

    output_dir = str(args.output_dir or "")
    problems = output_dir_problems(output_dir)
    try:
        resume = resolve_resume_from_checkpoint(args.resume_from_checkpoint, output_dir)
    except CheckpointError as error:
        problems.append(Problem("resume_from_checkpoint", str(error).split(": ", 1)[-1], "give a checkpoint folder, or `last`."))
        return problems
    if resume is None and args.resume_from_checkpoint in (None, False) and output_dir and latest_checkpoint(output_dir):
        problems.append(Problem(
            "output_dir", f"already holds {os.path.basename(latest_checkpoint(output_dir))}; a fresh run writes next to it.",
            "set resume_from_checkpoint: last to continue it, or choose a new output_dir.", warning=True))
    return problems
