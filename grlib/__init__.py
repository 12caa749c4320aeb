"""grlib: the thin library behind the generative-replay course (see the notebooks for the story)."""
from . import checkpoints, continual, data, metrics, nets, plots, profiles, results, strategies

__all__ = ["checkpoints", "continual", "data", "metrics", "nets", "plots", "profiles", "results", "strategies"]
