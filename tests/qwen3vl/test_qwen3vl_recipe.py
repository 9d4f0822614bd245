"""The Qwen3-VL-8B-Instruct recipe: geoqa.yaml's method and settings, Qwen3-VL's model and 32-pixel image bounds."""

from pathlib import Path

import yaml

from self_evolve_trl.cli import parse_recipe

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def test_qwen3vl_recipe_is_geoqa_with_qwen3vl_model_and_bounds():
    data_args, config, model_args = parse_recipe([str(RECIPES / "geoqa-qwen3-vl.yaml"), "--use_cpu", "true",
                                                  "--bf16", "false"])
    assert model_args.model_name_or_path == "Qwen/Qwen3-VL-8B-Instruct"
    assert (data_args.min_pixels, data_args.max_pixels) == (256 * 32 * 32, 1536 * 32 * 32)  # image tokens of 32x32
    ours, base = (yaml.safe_load((RECIPES / name).read_text()) for name in ("geoqa-qwen3-vl.yaml", "geoqa.yaml"))
    differ = {key for key in ours.keys() | base.keys() if ours.get(key) != base.get(key)}
    assert differ == {"model_name_or_path", "max_pixels", "top_k", "output_dir"}  # as its comments say
    assert config.top_k == 0 and config.reward_funcs == ["soft_frequency", "format"] and config.advantage == "lse"
