"""Every setting the course chose for a method, as data, for each kind of shift: new classes (class- and
task-incremental streams, e.g. Split-MNIST) and new domains (domain-incremental, e.g. Permuted-MNIST). The recipes
(`grlib.continual.recipes`) read them from here alone; an override replaces any of them, so a paper's own setting
is one argument away. Each was chosen on a validation split, never on the test set: the grids and ablations are in
docs/record.md, and tests/test_record.py checks the regularisers' strengths against their grids."""
from __future__ import annotations

from typing import Any


def same_for_both(settings: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Settings chosen on new classes and kept for new domains."""
    return {"class": settings, "domain": settings}


TUNED: dict[str, dict[str, dict[str, Any]]] = {
    "finetune": same_for_both({}),
    "joint": same_for_both({}),
    "ewc": {"class": {"strength": 1e6}, "domain": {"strength": 100.0}},
    "si": {"class": {"strength": 1000.0}, "domain": {"strength": 10.0}},
    "mas": {"class": {"strength": 1.0}, "domain": {"strength": 0.01}},
    # mode-IMM weighs every weight by its Fisher information: it takes a sample `fisher_factor` times EWC's
    "imm": {"class": {"merge": "mean", "l2_transfer": 1e-4, "fisher_factor": 4},
            "domain": {"merge": "mode", "l2_transfer": 1e-3, "fisher_factor": 4}},
    "er": same_for_both({"buffer_size": 1000, "reservoir": False}),
    # the paper's WGAN-GP (Gulrajani et al. 2017) replaying from a moving average of its weights, with two critic steps
    # (not five) at four times notebook 03's learning rate, its penalty lazily on every second; the replay distilled
    # and its grey levels matched. The plain recipe: ema_decay=0.0, critic_steps=5, gp_every=1, gan_lr=2e-4,
    # soft_labels=False, match_levels=False
    "dgr": same_for_both({"ema_decay": 0.995, "critic_steps": 2, "gan_lr": 8e-4, "critic_lr": None, "gp_every": 2,
                          "share_fakes": False, "soft_labels": True, "match_levels": True}),
    "mergan": same_for_both({"variant": "jtr", "alignment": 1e-3, "auxiliary": 0.0, "class_norm": True,
                             "ema_decay": 0.995, "critic_steps": 2, "soft_labels": True, "match_levels": True}),
    "ddgr": same_for_both({"patch": 2, "prediction": "x0", "ema_decay": 0.995, "min_snr_gamma": 1.0,
                           "sampler": "dpm++2m", "guidance_scale": 3.0, "soft_labels": True, "match_levels": True}),
    "pass": same_for_both({}),
}


def tuned(method: str, scenario: str) -> dict[str, Any]:
    """The settings of `method` for a stream of this scenario ("task", "domain" or "class")."""
    return dict(TUNED[method]["domain" if scenario == "domain" else "class"])
