"""Continual learning: task streams (`data`), memory buffers (`memory`), what the solver may answer in each scenario
(`scenarios`), the loop that fills the accuracy matrix (`loop`, whose `run` and `evaluate` are here too), metrics,
strategies, the profiles' budgets, the tuned settings (`tuned`) and the recipes that build each method (`recipes`)."""
from grlib.continual.loop import RunResult, evaluate, run
from grlib.continual.scenarios import active_logits, predict, scenario_logits

__all__ = ["RunResult", "active_logits", "evaluate", "predict", "run", "scenario_logits"]
