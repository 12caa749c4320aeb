"""Metrics against matrices computed by hand."""
import math

import pytest

from grlib.continual import metrics

R = [[90, 10, 0],
     [60, 95, 5],
     [50, 70, 98]]
SIZES = [100, 200, 100]


def test_accuracy_curve_weights_tasks_by_test_size():
    # after task 1: 90; after 2: (60·100 + 95·200)/300; after 3: (50·100 + 70·200 + 98·100)/400
    assert metrics.accuracy_curve(R, SIZES) == pytest.approx([90.0, 25000 / 300, 72.0])
    assert metrics.average_accuracy(R, SIZES) == pytest.approx(72.0)
    assert metrics.average_accuracy(R) == pytest.approx((50 + 70 + 98) / 3)


def test_backward_transfer():
    assert metrics.backward_transfer(R) == pytest.approx(((50 - 90) + (70 - 95)) / 2)
    assert math.isnan(metrics.backward_transfer([[99.0]]))


def test_forgetting_per_task_uses_best_earlier_accuracy():
    # task 1: max(90, 60) − 50 = 40; task 2: 95 − 70 = 25; task 3 is the last and is not counted
    assert metrics.forgetting(R, [0, 1, 2]) == pytest.approx(32.5)


def test_forgetting_per_class_ignores_accuracy_before_a_class_is_learned():
    C = [[80, 100, 0, 0],
         [70, 50, 90, 0],
         [40, 60, 85, 97]]
    # class 0: 80 − 40; class 1: 100 − 60; class 2 (learned at task 2): 90 − 85; class 3 is new at the end
    assert metrics.forgetting(C, [0, 0, 1, 2]) == pytest.approx((40 + 40 + 5) / 3)
    # improvement after learning counts as negative forgetting
    assert metrics.forgetting([[50, 0], [70, 90]], [0, 1]) == pytest.approx(-20)


def test_nothing_to_forget_is_nan_and_bad_shapes_are_errors():
    assert math.isnan(metrics.forgetting([[90.0, 0.0]], [0, 0]))
    with pytest.raises(ValueError, match="2-D"):
        metrics.average_accuracy([90.0, 80.0])
