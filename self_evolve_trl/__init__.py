"""self_evolve_trl: label-free (unsupervised self-evolution) GRPO for vision-language models, on TRL.

Public API (docs/architecture.md, "Public API"): `self_evolve_trl.answers`, `self_evolve_trl.rewards`, `self_evolve_trl.advantages`;
the trainer `SelfEvolveGRPOTrainer` and its config `SelfEvolveConfig` (imported lazily: they pull in TRL).
"""

__version__ = "0.1.0"

__all__ = ["SelfEvolveConfig", "SelfEvolveGRPOTrainer", "__version__"]


def __getattr__(name):
    if name == "SelfEvolveConfig":
        from .training.config import SelfEvolveConfig

        return SelfEvolveConfig
    if name == "SelfEvolveGRPOTrainer":
        from .training.trainer import SelfEvolveGRPOTrainer

        return SelfEvolveGRPOTrainer
    raise AttributeError(f"module 'self_evolve_trl' has no attribute {name!r}")
