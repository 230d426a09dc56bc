from __future__ import annotations

import pytest

from medssl.errors import ConfigError, DataError
from medssl.tasks import MEDMNIST_TASK_ALIASES, TASKS, normalise_task


def test_task_names_and_medmnist_strings_map_to_the_four_tasks() -> None:
    for task in TASKS:
        assert normalise_task(task) == task
    assert normalise_task("multi-label, binary-class") == "multilabel"
    assert set(MEDMNIST_TASK_ALIASES.values()) == set(TASKS)


def test_unknown_task_names_the_place_and_the_error_type_the_caller_asks_for() -> None:
    with pytest.raises(ConfigError, match=r"unknown task 'regression': expected one of binary, multiclass"):
        normalise_task("regression")
    with pytest.raises(DataError, match=r"^info.json: unknown task 'x'"):
        normalise_task("x", "info.json", DataError)
