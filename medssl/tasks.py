"""The label tasks medssl knows, shared by datasets (which declare one) and evaluation
(which scores by it).

MedMNIST's ``INFO[flag]["task"]`` strings are accepted as aliases, so a MedMNIST task can
be passed as is.
"""

from __future__ import annotations

from typing import Any, Type

from medssl.errors import ConfigError, MedSSLError

TASKS = ("binary", "multiclass", "multilabel", "ordinal")

MEDMNIST_TASK_ALIASES = {
    "binary-class": "binary",
    "multi-class": "multiclass",
    "multi-label, binary-class": "multilabel",
    "ordinal-regression": "ordinal",
}


def normalise_task(task: Any, where: str = "", error: Type[MedSSLError] = ConfigError) -> str:
    """One of :data:`TASKS` for ``task`` (a task name or a MedMNIST task string); otherwise
    ``error`` (a :class:`ConfigError` unless the caller says, e.g. ``DataError`` for a file),
    prefixed by ``where``."""
    t = MEDMNIST_TASK_ALIASES.get(str(task), str(task))
    if t not in TASKS:
        at = f"{where}: " if where else ""
        raise error(
            f"{at}unknown task {task!r}: expected one of {', '.join(TASKS)} "
            f"(or a MedMNIST task string: {', '.join(MEDMNIST_TASK_ALIASES)})"
        )
    return t


__all__ = ["TASKS", "MEDMNIST_TASK_ALIASES", "normalise_task"]
