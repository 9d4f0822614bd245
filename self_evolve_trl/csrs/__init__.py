"""CSRS: self-rewarding by re-inference (see docs/math.md, section "CSRS").

Each completion of a group is cut at anchor points (fractions of its length) and the policy finishes every prefix
again, K times; this re-inference step is called "retrace" (the `retrace_*` config fields, the `retrace/*` metrics).
A completion is then rewarded by how many of its group's re-inferred answers agree with its own answer
(`retrace_frequency`). With VSP (visual perturbation), the images of the re-inference prompts get Gaussian noise.

- `prefix`: the choices of the config (`RETRACE_MODES`, `ANCHOR_BASES`) and where a completion is cut
  (`prefix_length`). Plain Python.
- `perturb`: VSP, the seeded image noise (`noise_generator`, `perturb_image`, `add_noise`, ...). numpy and PIL.
- `provider`: `RetraceProvider`, which makes the re-inferences during the rollout with the trainer's own generation
  backend and hands them to the reward as its `retrace_completions` input. torch and TRL (import it from `self_evolve_trl.csrs.provider`).
- `reward`: `retrace_frequency`, CSRS's Softened Frequency Reward (registered as "retrace_frequency").
- `settings`: the `retrace_*` config fields and their checks.
"""

from __future__ import annotations

from .perturb import add_noise, map_images, noise_generator, noise_level, perturb_image, perturb_images
from .prefix import ANCHOR_BASES, NEW_TURN_NEEDS_CONVERSATIONS, RETRACE_MODES, prefix_length, strip_trailing
from .reward import retrace_frequency


# reward input -> "module:class" of its provider, built by the trainer when a reward function needs that input
PROVIDERS = {"retrace_completions": "self_evolve_trl.csrs.provider:RetraceProvider"}

__all__ = [
    "ANCHOR_BASES",
    "NEW_TURN_NEEDS_CONVERSATIONS",
    "PROVIDERS",
    "RETRACE_MODES",
    "add_noise",
    "map_images",
    "noise_generator",
    "noise_level",
    "perturb_image",
    "perturb_images",
    "prefix_length",
    "retrace_frequency",
    "strip_trailing",
]

