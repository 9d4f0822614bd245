"""Label-free training in miniature: the papers' comparison on CPU, end to end through `SelfEvolveGRPOTrainer`.

    python benchmarks/self_evolution_toy.py --figures-dir benchmarks/figures     # about 30-40 minutes on 2 cores
    python benchmarks/self_evolution_toy.py --summarise RUN_DIR [RUN_DIR ...] --output-dir DIR   # several runs

1. Base model. A tiny Qwen2.5-VL (`self_evolve_trl.data.tiny`) is taught a synthetic visual task (how many cells of a
   colour on a grid whose cells are Qwen's 28-px merged patches, `self_evolve_trl.data.synthetic`) by a plain
   supervised loop on correct worked solutions along three routes (row by row, column by column, or the answer at
   once), mixed with a verification task (recount, compare with a candidate's answer, `\\boxed{1}` or `\\boxed{0}`),
   so that the frozen copy can act as the judge, and with two-turn continuations (a partial solution as a finished
   assistant turn, then a new turn that finishes it), so that CSRS's `new_turn` re-inference is in distribution. A
   fixed, short budget (`--sft-steps`) leaves the base partly competent, with maj@k well above greedy pass@1;
   optionally (`--judge-target`) more verification until the base judges validation candidates well. Its held-out
   judge accuracy is printed.
2. Label-free training. From that base, every method trains with the same data, steps, batch, learning rate, KL
   coefficient and sampler for each seed; only its own reward and advantage differ (`benchmarks/toy/methods.py`):
   majority vote (MM-UPT), the soft consistency prior with centred or LSE advantages, Self-Judge's judge and the same
   judge held at chance (its scores shuffled within each step), CSRS in a new turn and in the same turn, TTRL's larger
   vote, self-certainty (Intuitor), token entropy (RENT), the consistency filter, and crossed reward × advantage
   pairs; methods whose reward is not installed are skipped and named. Rewards never see the label column.
3. Report. On a held-out split that shares no (image, question) with any training split: greedy pass@1, sampled
   pass@1, maj@k and pass@k (means ± sd over seeds); the differences between key pairs of methods, paired by seed,
   with 95 % t-intervals; from the training logs, pseudo-label accuracy, the high-confidence share, answer entropy,
   completion length and how fast the share rises. Writes `results.json`, `table.md`, `differences.md`, each run's
   `log_history.json` and two figures to `--output-dir` (the figures also to `--figures-dir`). The table is last.

`--summarise` reads several runs' results (grid sizes, tasks, data seeds) and plots each method's gain against the
base's greedy pass@1, maj@k, maj@k − pass@1 and pass@k. Everything else is an argument (`--help`).
"""

import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from benchmarks.toy.cli import main  # noqa: E402


if __name__ == "__main__":
    main(description=__doc__.split("\n\n")[0])
