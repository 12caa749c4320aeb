"""Continual-learning methods behind one small interface, `Strategy`: learn(stream, t) plus hooks and state.
To build one as the course does, use `grlib.continual.recipes.build`."""
from grlib.continual.strategies.base import Finetune, Joint, Strategy
from grlib.continual.strategies.generative import DDGR, DGR, GenerativeReplay, MeRGAN
from grlib.continual.strategies.imm import IMM
from grlib.continual.strategies.prototypes import PASS
from grlib.continual.strategies.regularization import EWC, MAS, SI, fisher_diagonal, output_sensitivity
from grlib.continual.strategies.replay import ER, Replay

__all__ = ["Strategy", "Finetune", "Joint", "Replay", "ER", "EWC", "SI", "MAS", "IMM", "GenerativeReplay", "DGR",
           "DDGR", "MeRGAN", "PASS", "fisher_diagonal", "output_sensitivity"]
