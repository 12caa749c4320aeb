"""Continual-learning methods behind one small interface, `Strategy`: learn(stream, t) plus hooks and state.
To build one as the course does, use `grlib.recipes.build`."""
from .base import Finetune, Joint, Strategy
from .generative import DDGR, DGR, GenerativeReplay, MeRGAN
from .imm import IMM
from .prototypes import PASS
from .regularization import EWC, MAS, SI, fisher_diagonal, output_sensitivity
from .replay import ER, Replay

__all__ = ["Strategy", "Finetune", "Joint", "Replay", "ER", "EWC", "SI", "MAS", "IMM", "GenerativeReplay", "DGR",
           "DDGR", "MeRGAN", "PASS", "fisher_diagonal", "output_sensitivity"]
