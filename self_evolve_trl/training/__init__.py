"""Training: `SelfEvolveConfig` (TRL's `GRPOConfig` plus the methods' settings) and `SelfEvolveGRPOTrainer`, with
what they need around a step: reward setup and whole-group scoring, checkpoints of our own state, non-finite guards,
bad-row handling, diagnostics, held-out evaluation, the console line and the run summary (docs/architecture.md,
"Training step")."""
