"""Continual-learning methods behind one small interface, `Strategy`: learn(stream, t) plus hooks and state."""
from .base import Finetune, Joint, Strategy
from .regularization import EWC, SI, fisher_diagonal
from .generative import DDGR, DGR
from .replay import ER

__all__ = ["Strategy", "Finetune", "Joint", "ER", "EWC", "SI", "DGR", "DDGR", "fisher_diagonal"]
