"""CSRS (consistency under self-retracing): the re-inference settings, provider and reward."""
