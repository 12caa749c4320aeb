"""The course's record: the tuned settings are the grids' best values, and the record renders."""
import statistics

import matplotlib
import pytest
from matplotlib import pyplot as plt

from grlib.continual import tuned
from grlib.course import plots, record

matplotlib.use("Agg")

STREAMS = {"class": "split", "domain": "permuted"}


def best(names: list[str], key: str) -> tuple:
    """The (grid, value) with the best mean A_T over the seeds across the named grids of docs/record/."""
    means = {(name, value): statistics.mean(r["A_T"] for r in runs)
             for name in names for value, runs in record.by_value(record.load(name)).items()}
    return max(means, key=means.get)


@pytest.mark.parametrize("kind", STREAMS)
@pytest.mark.parametrize("method", ["ewc", "si", "mas"])
def test_tuned_strength_is_the_best_on_validation(method, kind):
    name = f"{method}-{STREAMS[kind]}-strength"
    assert record.load(name)["validation"], f"{name} was not measured on a validation split"
    assert tuned.TUNED[method][kind]["strength"] == best([name], "strength")[1]


@pytest.mark.parametrize("kind", STREAMS)
def test_tuned_imm_is_the_best_merge_and_transfer_on_validation(kind):
    names = {merge: f"imm-{STREAMS[kind]}-l2_transfer-merge={merge}" for merge in ("mean", "mode")}
    grid, value = best(list(names.values()), "l2_transfer")
    imm = tuned.TUNED["imm"][kind]
    assert (names[imm["merge"]], imm["l2_transfer"]) == (grid, value)


def test_grid_table_marks_the_best_value_and_names_its_seeds():
    table = record.grid_table(record.load("mas-permuted-strength"))
    assert "per seed (0, 1, 2)" in table
    bold = [line for line in table.splitlines() if "**" in line]
    assert len(bold) == 1 and bold[0].startswith("| 0.01 |")


def test_the_ablation_chart_draws_each_variants_mean_and_colours_the_chosen_one():
    runs = [{"value": v, "seed": s, "A_T": a} for v, s, a in (("a", 0, 80.0), ("a", 1, 90.0), ("b", 0, 70.0))]
    fig, ax = plt.subplots()
    means = plots.ablation({"runs": runs, "chosen": "b"}, ax)
    assert means == {"a": 85.0, "b": 70.0}
    assert [bar.get_width() for bar in ax.patches] == [85.0, 70.0]
    assert [bar.get_facecolor() for bar in ax.patches][1] == matplotlib.colors.to_rgba("tab:orange")
    plt.close(fig)
