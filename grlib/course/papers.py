"""The published numbers the course sets its own beside (the seminar's tables, `../shared/seed/SUMMARY.md`): lessons
quote these, and every number a run produces is printed by that run instead (tests/test_lesson_text.py)."""
from __future__ import annotations

# Shin et al. (2017), Table 1: MNIST test accuracy (%) of solvers 1-5, each taught only by the previous scholar.
DGR_CHAIN = (98.81, 98.64, 98.58, 98.53, 98.56)

# Gao & Liu (2023), Table 1: (A_T, F_T) in % after the last task, class-incremental. Columns: CIFAR-100 with
# AlexNet and ResNet, then ImageNet with AlexNet and ResNet, each with 5 and 10 classes a task after a first task of
# half the classes (ImageNet: 50 and 100). None: not reported.
DDGR_COLUMNS = ("C100 AlexNet NC=5", "C100 AlexNet NC=10", "C100 ResNet NC=5", "C100 ResNet NC=10",
                "ImageNet AlexNet 50", "ImageNet AlexNet 100", "ImageNet ResNet 50", "ImageNet ResNet 100")
DDGR_TABLE: dict[str, tuple[tuple[float, float] | None, ...]] = {
    "finetune": ((6.11, 60.45), (5.12, 59.87), (18.08, 61.65), (17.50, 62.79), (5.33, 56.55), (3.24, 57.83),
                 (12.95, 58.58), (10.28, 59.71)),
    "si": ((16.96, 48.58), (13.57, 50.18), (26.45, 52.27), (23.15, 56.65), (19.38, 41.18), (14.38, 45.94),
           (28.88, 41.93), (24.38, 44.56)),
    "ewc": ((15.29, 50.38), (9.71, 54.27), (25.49, 52.83), (18.82, 60.47), (15.22, 45.65), (13.03, 47.01),
            (23.51, 46.98), (22.03, 46.96)),
    "mas": ((20.13, 45.75), (18.94, 45.37), (29.94, 49.38), (28.28, 51.31), (16.35, 44.85), (14.51, 45.70),
            (31.25, 39.55), (25.51, 44.34)),
    "imm": ((11.26, 54.60), (9.87, 54.57), (21.02, 58.12), (19.79, 59.89), (13.68, 46.65), (11.13, 49.31),
            (23.19, 47.70), (19.73, 49.62)),
    "dgr": ((42.49, 24.08), (38.16, 26.52), (52.96, 26.36), (48.94, 31.14), (43.94, 17.31), (38.81, 22.52),
            (53.32, 17.96), (47.56, 21.84)),
    "mergan": ((46.03, 36.95), (43.23, 26.49), (57.19, 20.12), (55.69, 22.55), None, None, None, None),
    "pass": ((53.21, 27.35), (48.65, 19.43), (62.30, 16.97), (60.63, 21.21), None, None, None, None),
    "ddgr": ((59.20, 23.00), (52.22, 16.86), (63.40, 15.34), (60.04, 19.25), (53.86, 6.98), (52.21, 7.82),
             (64.83, 5.65), (61.26, 7.73)),
}

# Other published numbers the lessons quote: Ho et al. (2020), DDPM's CIFAR-10 FID and network size.
CITED = {"DDPM CIFAR-10 FID": 3.17, "DDPM CIFAR-10 UNet parameters (millions)": 35.7}


def published_numbers() -> set[float]:
    """Every number above: what lesson text may quote without a run producing it."""
    cells = [value for row in DDGR_TABLE.values() for cell in row if cell is not None for value in cell]
    return {*DGR_CHAIN, *cells, *CITED.values()}
