"""The vLLM backend of the evaluation against a stand-in of vLLM: sampling parameters and seeds, LoRA adapters."""

from __future__ import annotations

import os
import sys


from tests.eval.eval_fixtures import (
    error_line,
    eval_config,
    fixtures,  # noqa: F401  (a fixture)
    )


# ----------------------------------------------------------------------------------------------------------------
# vLLM backend, what no real-engine test covers (tests/eval/test_vllm_eval.py runs the real engine: prompts, images,
# pixel bounds, greedy decoding, dtype): the sampling parameters and seeds, and LoRA adapters. A stand-in of vLLM
# itself (its `LLM`, `SamplingParams`, `LoRARequest`, `ModelConfig`, platform) records what our thin wrapper hands it.


class FakeVLLM:
    def __init__(self):
        import types

        self.engines, self.calls = [], []
        fake = self

        class SamplingParams:
            def __init__(self, **kwargs):
                self.kwargs = kwargs

        class LLM:
            def __init__(self, **kwargs):
                fake.engines.append(kwargs)

            def generate(self, requests, params, lora_request=None, use_tqdm=True):
                params = params if isinstance(params, list) else [params] * len(requests)  # vLLM takes either
                assert len(params) == len(requests)
                fake.calls.append((requests, [p.kwargs for p in params], lora_request))
                Output = types.SimpleNamespace
                return [Output(outputs=[Output(text="so \\boxed{A}")] * p.kwargs["n"]) for p in params]

        class LoRARequest:
            def __init__(self, name, id, path):
                self.name, self.id, self.path = name, id, path

        class ModelConfig:  # vLLM's rule for `auto` with a float32 checkpoint
            def __init__(self, model, dtype):
                import torch

                self.dtype = torch.bfloat16 if dtype == "auto" else getattr(torch, dtype)

        self.vllm = types.ModuleType("vllm")
        self.vllm.LLM, self.vllm.SamplingParams = LLM, SamplingParams
        self.config = types.ModuleType("vllm.config")
        self.config.ModelConfig = ModelConfig
        self.platforms = types.ModuleType("vllm.platforms")
        self.platforms.current_platform = types.SimpleNamespace(is_cpu=lambda: False)  # a GPU
        self.lora = types.ModuleType("vllm.lora")
        self.lora_request = types.ModuleType("vllm.lora.request")
        self.lora_request.LoRARequest = LoRARequest

    def install(self, monkeypatch):
        import self_evolve_trl.training.config  # noqa: F401  (TRL probes for vLLM when first imported: not for the stand-in)

        monkeypatch.setitem(sys.modules, "vllm", self.vllm)
        monkeypatch.setitem(sys.modules, "vllm.config", self.config)
        monkeypatch.setitem(sys.modules, "vllm.platforms", self.platforms)
        monkeypatch.setitem(sys.modules, "vllm.lora", self.lora)
        monkeypatch.setitem(sys.modules, "vllm.lora.request", self.lora_request)


def test_vllm_backend_samples_each_question_with_its_own_seed(tiny_model_dir, fixtures, tmp_path, monkeypatch):
    from self_evolve_trl.eval.runner import evaluate, question_seed

    fake = FakeVLLM()
    fake.install(monkeypatch)
    config = eval_config(tiny_model_dir, fixtures, tmp_path / "out", backend="vllm", samples=3, temperature=0.7,
                     top_p=0.9, top_k=20, seed=5, batch_size=4, max_new_tokens=99)
    results = evaluate(config)
    (engine,) = fake.engines
    assert engine["model"] == tiny_model_dir and engine["seed"] == 5 and "enable_lora" not in engine
    greedy_calls = [c for c in fake.calls if c[1][0]["n"] == 1]
    sampled_calls = [c for c in fake.calls if c[1][0]["n"] == 3]
    assert [len(c[0]) for c in greedy_calls] == [4, 1] and [len(c[0]) for c in sampled_calls] == [4, 1]
    # explicit decoding: no repetition penalty (the checkpoint's generation_config is not vLLM's default either)
    assert greedy_calls[0][1][0] == {"n": 1, "temperature": 0.0, "top_p": 1.0, "max_tokens": 99,
                                     "repetition_penalty": 1.0, "seed": None}
    assert sampled_calls[1][1] == [{"n": 3, "temperature": 0.7, "top_p": 0.9, "top_k": 20, "max_tokens": 99,
                                    "repetition_penalty": 1.0, "seed": question_seed(5, "5")}]
    # each question is sampled with its own seed (from the run's seed and its id), not one seed per batch
    seeds = [params["seed"] for params in sampled_calls[0][1]]
    assert seeds == [question_seed(5, i) for i in ("1", "2", "3", "4")] and len(set(seeds)) == 4
    entry = results["benchmarks"]["mathvision"]
    assert results["run"]["backend"] == "vllm" and entry["extraction"] == {"boxed": 20}
    # every answer is "A": right for the questions whose reference is A (ids 1), wrong elsewhere
    assert entry["modes"]["greedy"]["accuracy"] == entry["modes"]["majority"]["accuracy"] == 20.0


def test_letter_set_questions_get_the_plural_hint(tiny_model_dir, fixtures, tmp_path, monkeypatch):
    from self_evolve_trl.eval.config import DEFAULT_CHOICE_HINT, DEFAULT_CHOICES_HINT
    from self_evolve_trl.eval.runner import evaluate

    fake = FakeVLLM()
    fake.install(monkeypatch)
    evaluate(eval_config(tiny_model_dir, fixtures, tmp_path / "out", backend="vllm",
                         benchmarks=["logicvista", "wemath"], data={n: fixtures[n] for n in ("logicvista", "wemath")},
                         limit=1))
    logicvista, wemath = (fake.calls[i][0][0]["prompt"] for i in (0, -1))  # 1 LogicVista item, then WeMath's
    assert f"Which come next? Select from A-E\n{DEFAULT_CHOICES_HINT} Reason" in logicvista
    assert f"No correct answer\n{DEFAULT_CHOICE_HINT} Reason" in wemath and DEFAULT_CHOICES_HINT not in wemath


def test_vllm_backend_serves_a_lora_adapter_as_a_lora_request(tiny_model_dir, fixtures, tmp_path, monkeypatch):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    from self_evolve_trl.eval.runner import evaluate

    adapter_dir = tmp_path / "adapter"
    # q_proj is in the language model only (the vision tower's attention has a fused qkv)
    get_peft_model(AutoModelForImageTextToText.from_pretrained(tiny_model_dir),
                   LoraConfig(r=24, target_modules=["q_proj"])).save_pretrained(adapter_dir)
    fake = FakeVLLM()
    fake.install(monkeypatch)
    results = evaluate(eval_config(str(adapter_dir), fixtures, tmp_path / "out", backend="vllm", limit=1))
    (engine,) = fake.engines
    # rank 24 needs max_lora_rank 32: vLLM accepts only 1, 8, 16, 32, 64, ...
    assert engine["model"] == tiny_model_dir and engine["enable_lora"] is True and engine["max_lora_rank"] == 32
    lora = fake.calls[0][2]
    assert (lora.name, lora.path) == ("adapter", str(adapter_dir))
    assert results["run"]["adapter_served"].startswith("served as a vLLM LoRA request")
    assert not (tmp_path / "out" / "merged_model").exists()


def test_vllm_backend_merges_an_adapter_with_vision_tower_weights(tiny_model_dir, fixtures, tmp_path, monkeypatch):
    """vLLM applies LoRA to the language model only: an adapter that also adapts the vision tower (gate/up/down_proj
    match Qwen2.5-VL's vision MLPs too) is merged with peft and vLLM gets the merged model, as transformers does."""
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from safetensors.torch import load_file
    from transformers import AutoModelForImageTextToText

    from self_evolve_trl.eval.runner import evaluate

    torch.manual_seed(0)
    adapter_dir = tmp_path / "adapter"
    get_peft_model(AutoModelForImageTextToText.from_pretrained(tiny_model_dir),
                   LoraConfig(r=4, target_modules=["gate_proj", "up_proj", "down_proj"], init_lora_weights=False)
                   ).save_pretrained(adapter_dir)
    assert any(".visual." in name for name in load_file(adapter_dir / "adapter_model.safetensors"))
    fake = FakeVLLM()
    fake.install(monkeypatch)
    out = tmp_path / "out"
    results = evaluate(eval_config(str(adapter_dir), fixtures, out, backend="vllm", limit=1))
    (engine,) = fake.engines
    merged = out / "merged_model"
    assert engine["model"] == str(merged) and "enable_lora" not in engine and fake.calls[0][2] is None
    served = results["run"]["adapter_served"]
    assert served.startswith(f"merged into the base model with peft ({merged}), as it has LoRA weights in the vision "
                             "tower") and served in results["markdown"]
    # the merged folder is a complete model with the processor, and holds the adapter's vision-tower update
    for name in ("config.json", "model.safetensors", "processor_config.json", "tokenizer_config.json",
                 "merged_from.json"):
        assert (merged / name).exists(), name
    key = "model.visual.blocks.0.mlp.gate_proj.weight"
    load = lambda path: AutoModelForImageTextToText.from_pretrained(path, dtype=torch.bfloat16)  # noqa: E731
    expected = PeftModel.from_pretrained(load(tiny_model_dir), str(adapter_dir)).merge_and_unload().state_dict()[key]
    weight = load(str(merged)).state_dict()[key]
    assert torch.equal(weight, expected) and not torch.equal(weight, load(tiny_model_dir).state_dict()[key])

    # the next run (one more question) reuses the merged folder; one with every output cached starts no engine
    stamp = os.stat(merged / "model.safetensors").st_mtime_ns
    evaluate(eval_config(str(adapter_dir), fixtures, out, backend="vllm", limit=2))
    assert os.stat(merged / "model.safetensors").st_mtime_ns == stamp and fake.engines[1]["model"] == str(merged)
    evaluate(eval_config(str(adapter_dir), fixtures, out, backend="vllm", limit=2))
    assert len(fake.engines) == 2


def test_vllm_backend_without_vllm_says_so(tiny_model_dir, fixtures, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # not importable, as on these machines
    err = error_line(["--model", tiny_model_dir, "--benchmarks", "geoqa", "--data", f"geoqa={fixtures['geoqa']}",
                  "--backend", "vllm", "--output-dir", str(tmp_path)], capsys)
    assert "--backend vllm needs vLLM" in err and "use --backend transformers" in err
