"""The `lse` advantage's offset (docs/math.md#advantages-modes): does `log_group_size` change the expected policy
gradient, and by how much does it change its variance, against `none`?

With the log-softmax a_i = r_i/τ - log Σ_j exp(r_j/τ), the two offsets give A_i = a_i (`none`) and
A_i = a_i + log G (`log_group_size`). At the first iteration of a step (ratio 1) and β = 0, the gradient of TRL's
GRPO loss is

    ∇L = - Σ_i c_i A_i g_i,     g_i = ∇_θ Σ_t log π_θ(o_i,t | q, o_i,<t)   (the completion's score function)

with the loss type's weights c_i: 1/G for a plain sum over each completion's tokens (`sum`; TRL's `dr_grpo` up to its
constant 1/max_completion_length), 1/(G |o_i|) for the mean over each completion's tokens (TRL's `grpo`), and
1/Σ_j |o_j| for the mean over the group's tokens (TRL's default `dapo`, here over one group). The offset adds
d = -log G Σ_i c_i g_i. Since the G completions are sampled independently from π_θ itself, E[h(o_i) g_i] =
∇_θ E[h(o)] for a function h of one completion, and E[f Σ_i g_i] = ∇_θ E[f] for a function f of the whole group
(Σ_i g_i is the group's score function), so

    sum:  E[d] = 0                                  (c_i = 1/G is a constant: the expected gradient is unchanged)
    grpo: E[d] = -log G ∇_θ E[1/|o|]               (not 0 in general)
    dapo: E[d] = -log G ∇_θ E[1 / Σ_j |o_j|]       (not 0 in general, smaller: the sum varies less)

For `sum` only the variance changes; for `grpo` and `dapo` the offset also moves the expected gradient, towards
shorter completions (descent on the loss then raises E[1/|o|]), by an amount that depends on how much the lengths
vary. The identities need the completions sampled from exactly the policy that is differentiated (temperature 1,
no top-k/top-p, the same logits) and the first iteration of a step (ratio 1; the clip inactive). This script
measures both the mean and the variance.

Setup: the tiny Qwen2.5-VL (`self_evolve_trl.data.tiny`, random weights, all its parameters) and prompts of the synthetic
data. Every group is G completions sampled once from π_θ (temperature 1, top-p 1, no top-k: the sampler is the
policy, checked against the forward pass; image and video placeholder tokens are left out of both), with
`soft_frequency` rewards (answers read by `last_number`) and the advantages of
`self_evolve_trl.advantages.group_advantages(mode="lse")` with each offset: the two estimators are always evaluated on
the same completions. Groups are drawn afresh from the seeds `--seed` .. `--seed` + N - 1, cycling over the prompts.

Printed last, per loss type: the norm of each mean gradient over the N groups, their cosine similarity, the norm of
their difference relative to the `none` mean gradient and its Monte-Carlo error (the standard error over groups of
the paired difference, sqrt(tr Cov(d) / N)), z = ||mean difference|| / that error (about 1 when the expected
gradients agree, much larger when they do not), the mean projections of the `log_group_size` estimate and of the
difference on the direction of the `log_group_size` mean gradient of the first half of the groups, measured on the
second half (so the direction does not depend on the data tested) with their t statistic, and the per-group
gradient variance (trace of the covariance) of each offset (and of `centered`, for reference) and their ratio.

    OMP_NUM_THREADS=1 python benchmarks/lse_offset.py          # --groups 384 --group-size 8 --prompts 8 by default
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the package here, if not installed

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

OFFSETS = ("none", "log_group_size")
# loss type -> description; the weights c_i are in `loss_weights`
LOSS_TYPES = {
    "sum": "sum over each completion's tokens (dr_grpo up to a constant)",
    "grpo": "mean over each completion's tokens (TRL loss_type grpo)",
    "dapo": "mean over the group's tokens (TRL loss_type dapo, the default)",
}


def loss_weights(loss_type: str, lengths):
    """The weights c_i of each completion's summed log-probability in the loss (see the module docstring)."""
    import torch

    lengths = lengths.double()
    group_size = lengths.numel()
    if loss_type == "sum":
        return torch.full_like(lengths, 1.0 / group_size)
    if loss_type == "grpo":
        return 1.0 / (group_size * lengths)
    return torch.full_like(lengths, 1.0 / lengths.sum().item())


class Moments:
    """Running sum and sum of squared norms of vectors: their mean and the trace of their covariance."""

    def __init__(self, size: int):
        import torch

        self.n, self.sum, self.squares = 0, torch.zeros(size, dtype=torch.float64), 0.0

    def add(self, x) -> None:
        self.n += 1
        self.sum += x
        self.squares += float(x @ x)

    @property
    def mean(self):
        return self.sum / self.n

    def trace_cov(self) -> float:
        """Unbiased estimate of tr Cov(x)."""
        mean = self.mean
        return (self.squares - self.n * float(mean @ mean)) / (self.n - 1)


def sample_group(model, processor, row, group_size: int, max_new_tokens: int, seed: int):
    """G completions of one prompt sampled from the policy, their summed log-probabilities (with the graph), their
    lengths (tokens up to and including the end of turn), their texts, and the largest difference between the
    sampler's log-probabilities and the forward pass's.

    The policy never writes image or video placeholder tokens (a random model would, and the forward pass would
    then look for image features they do not have): they are suppressed in sampling and masked out of the
    forward pass's softmax alike, so the sampler is exactly the policy whose log-probabilities are differentiated.
    """
    import torch

    suppressed = processor.tokenizer.convert_tokens_to_ids(["<|image_pad|>", "<|video_pad|>"])

    text = processor.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=False)
    batch = processor(text=[text], images=[row["images"]], return_tensors="pt")
    prompt_length = batch["input_ids"].shape[1]
    torch.manual_seed(seed)
    with torch.no_grad():
        out = model.generate(
            **batch, do_sample=True, temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=max_new_tokens,
            num_return_sequences=group_size, output_scores=True, return_dict_in_generate=True,
            suppress_tokens=suppressed,
        )
    completion_ids = out.sequences[:, prompt_length:]
    eos = torch.tensor(model.generation_config.eos_token_id)
    is_eos = torch.isin(completion_ids, eos)
    # tokens up to and including the first end-of-turn token (generate pads after it)
    mask = (torch.cumsum(is_eos.long(), dim=1) - is_eos.long()) == 0
    lengths = mask.sum(dim=1)

    attention_mask = torch.cat([batch["attention_mask"].repeat(group_size, 1), mask.long()], dim=1)
    logits = model(
        input_ids=out.sequences,
        attention_mask=attention_mask,
        pixel_values=batch["pixel_values"].repeat(group_size, 1),
        image_grid_thw=batch["image_grid_thw"].repeat(group_size, 1),
    ).logits[:, prompt_length - 1 : -1].float()
    logits[..., suppressed] = -torch.inf
    token_logprobs = torch.log_softmax(logits, dim=-1).gather(-1, completion_ids.unsqueeze(-1)).squeeze(-1)
    sampler = torch.log_softmax(torch.stack(out.scores, dim=1).float(), dim=-1)
    sampler = sampler.gather(-1, completion_ids.unsqueeze(-1)).squeeze(-1)
    mismatch = (sampler - token_logprobs.detach())[mask].abs().max().item()
    summed = (token_logprobs * mask).sum(dim=1)
    texts = processor.batch_decode(completion_ids * mask + (~mask) * eos[-1], skip_special_tokens=True)
    return summed, lengths, texts, mismatch


def score_functions(model, summed):
    """g_i = ∇_θ log π(o_i) of each completion, as rows of a (G, D) float64 matrix over all parameters."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    rows = []
    for i in range(summed.numel()):
        grads = torch.autograd.grad(summed[i], params, retain_graph=i < summed.numel() - 1, allow_unused=True)
        rows.append(torch.cat([
            (g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params)
        ]).double())
    return torch.stack(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--groups", type=int, default=384, help="groups N (each sampled afresh from its own seed)")
    parser.add_argument("--group-size", type=int, default=8, help="completions per group G")
    parser.add_argument("--prompts", type=int, default=8, help="synthetic prompts the groups cycle over")
    parser.add_argument("--max-new-tokens", type=int, default=16, help="completion length limit")
    parser.add_argument("--tau", type=float, default=1.0, help="lse temperature")
    parser.add_argument("--seed", type=int, default=0, help="first group's seed")
    args = parser.parse_args()
    if args.groups < 4:
        parser.error("--groups must be at least 4 (the t statistic uses two halves)")

    import torch
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    from self_evolve_trl.advantages import group_advantages
    from self_evolve_trl.data.arguments import DataArguments
    from self_evolve_trl.data import load_training_dataset
    from self_evolve_trl.rewards.consistency import soft_frequency
    from self_evolve_trl.data.tiny_model import build_tiny_qwen25vl

    torch.set_num_threads(1)
    start = time.perf_counter()
    model_dir = build_tiny_qwen25vl(os.path.join(tempfile.mkdtemp(prefix="lse-offset-"), "tiny"))
    processor = AutoProcessor.from_pretrained(model_dir, padding_side="left")
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32)
    model.eval()  # no dropout; the gradients are still taken
    dataset = load_training_dataset(DataArguments(synthetic_size=args.prompts, instruction="Answer in \\boxed{}."))
    rows = [dataset[i] for i in range(len(dataset))]
    size = sum(p.numel() for p in model.parameters() if p.requires_grad)
    G = args.group_size

    moments = {(lt, kind): Moments(size) for lt in LOSS_TYPES for kind in (*OFFSETS, "difference", "centered")}
    half = args.groups // 2
    direction = {}
    projections = {(lt, kind): [] for lt in LOSS_TYPES for kind in ("log_group_size", "difference")}
    mismatch, rewards_seen, equal_groups, lengths_seen = 0.0, [], 0, []
    for n in range(args.groups):
        if n == half:  # the direction of the (low-variance) log_group_size mean gradient of the first half
            for lt in LOSS_TYPES:
                mean = moments[lt, "log_group_size"].mean
                direction[lt] = mean / mean.norm()
        summed, lengths, texts, group_mismatch = sample_group(
            model, processor, rows[n % len(rows)], G, args.max_new_tokens, args.seed + n
        )
        mismatch = max(mismatch, group_mismatch)
        rewards = torch.tensor(soft_frequency(texts, group_size=G, extractor="last_number"), dtype=torch.float32)
        rewards_seen += rewards.tolist()
        lengths_seen += lengths.tolist()
        equal_groups += int(bool((rewards == rewards[0]).all()))
        advantages = {
            offset: group_advantages(rewards, G, mode="lse", tau=args.tau, offset=offset).double()
            for offset in OFFSETS
        }
        advantages["centered"] = group_advantages(rewards, G, mode="centered").double()  # for reference
        scores = score_functions(model, summed)
        for lt in LOSS_TYPES:
            weights = loss_weights(lt, lengths)
            estimates = {kind: -(weights * a) @ scores for kind, a in advantages.items()}
            estimates["difference"] = estimates["log_group_size"] - estimates["none"]
            for kind, estimate in estimates.items():
                moments[lt, kind].add(estimate)
            if n >= half:
                for kind in ("log_group_size", "difference"):
                    projections[lt, kind].append(float(estimates[kind] @ direction[lt]))
        if (n + 1) % max(1, args.groups // 8) == 0:
            print(f"{n + 1}/{args.groups} groups, {time.perf_counter() - start:.0f} s", flush=True)

    lengths_t = torch.tensor(lengths_seen, dtype=torch.float64)
    print()
    print(f"figures ({args.groups} groups of {G} completions of <= {args.max_new_tokens} tokens over "
          f"{len(rows)} synthetic prompts, soft_frequency rewards, lse tau={args.tau:g}; gradient of the loss over "
          f"all {size} parameters of the tiny Qwen2.5-VL; {time.perf_counter() - start:.0f} s):")
    print(f"  sampler is the policy: max |log p(generate) - log p(forward)| = {mismatch:.1e}")
    print(f"  rewards: mean {sum(rewards_seen) / len(rewards_seen):.3f}, groups with all-equal rewards "
          f"{100 * equal_groups / args.groups:.0f} %; completion length mean {lengths_t.mean():.1f}, "
          f"sd {lengths_t.std():.1f} tokens")
    for lt, description in LOSS_TYPES.items():
        none, offset, difference, centered = (moments[lt, k] for k in (*OFFSETS, "difference", "centered"))
        norm_none, norm_offset = none.mean.norm().item(), offset.mean.norm().item()
        var_none, var_offset = none.trace_cov(), offset.trace_cov()
        cosine = float(none.mean @ offset.mean) / (norm_none * norm_offset)
        error = math.sqrt(difference.trace_cov() / difference.n)
        gap = difference.mean.norm().item()
        along = {}
        for kind in ("log_group_size", "difference"):
            values = torch.tensor(projections[lt, kind], dtype=torch.float64)
            along[kind] = (values.mean().item(), values.std().item() / math.sqrt(values.numel()))
        print(f"  loss {lt}: {description}")
        print(f"    mean gradient (± MC error, sqrt(tr Cov / N)): ||none|| {norm_none:.4g} ± "
              f"{math.sqrt(var_none / none.n):.2g}, ||log_group_size|| {norm_offset:.4g} ± "
              f"{math.sqrt(var_offset / offset.n):.2g}")
        print(f"    none vs log_group_size: cosine {cosine:.4f}; ||difference|| / ||none|| = {gap / norm_none:.4f} "
              f"± {error / norm_none:.4f} (MC error); z = ||difference|| / MC error = {gap / error:.2f}")
        print(f"    along the log_group_size mean gradient of groups 1-{half}, over groups {half + 1}-{args.groups}: "
              f"log_group_size {along['log_group_size'][0]:.4g} ± {along['log_group_size'][1]:.2g}, difference "
              f"{along['difference'][0]:+.4g} ± {along['difference'][1]:.2g} (t = "
              f"{along['difference'][0] / along['difference'][1]:+.2f})")
        print(f"    per-group gradient variance (trace): none {var_none:.4g}, log_group_size {var_offset:.4g} "
              f"(centered {centered.trace_cov():.4g}); ratio none / log_group_size = {var_none / var_offset:.1f}")

if __name__ == "__main__":
    main()
