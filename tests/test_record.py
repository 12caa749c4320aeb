"""The course's record: the tuned settings are the grids' best values, and the record renders."""
import statistics

import pytest

from grlib.continual import tuned
from grlib.course import record

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
