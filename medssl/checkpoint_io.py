"""Checkpoint files: atomic writes, safe loads, RNG state capture.

Used by training (save / resume) and evaluation (load an encoder), so it depends on
neither. Loading never executes code from a file: checkpoints go through
``torch.load(weights_only=True)`` and exported encoders are ``safetensors`` files.
"""

from __future__ import annotations

import pickle
import random
import zipfile
from pathlib import Path
from typing import Any, Dict, Union

import numpy as np
import torch

from medssl.errors import MedSSLError, WriteError
from medssl.fileio import PathLike, atomic_write
from medssl.text import no_such_file



class CheckpointError(MedSSLError):
    """A checkpoint file is missing, damaged, unsafe or of the wrong kind."""


def save_checkpoint(state: Dict[str, Any], path: PathLike) -> Path:
    """Atomically save ``state`` (tensors, numbers, strings, lists, dicts) with torch.save.

    Raises:
        CheckpointError: the write failed (disk full, read-only filesystem, no permission);
            the previous file at ``path``, if any, is left intact.
    """
    advice = ("free some space or choose another out_dir, then continue with --resume "
              "(the previous checkpoint is intact)")
    try:
        return atomic_write(path, lambda tmp: _save_through_file(state, tmp), "checkpoint", advice)
    except WriteError as exc:
        raise CheckpointError(str(exc)) from exc.__cause__


def _save_through_file(state: Dict[str, Any], tmp: Path) -> None:
    # Through a Python file object, a full disk surfaces as OSError(ENOSPC) with its errno;
    # given a path, torch's own writer reports it as a RuntimeError with no cause
    # ("unexpected pos ..."), indistinguishable from any other failure.
    with open(tmp, "wb") as fh:
        torch.save(state, fh)


def load_checkpoint(path: PathLike, map_location: Union[str, torch.device] = "cpu") -> Dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`, refusing pickled code.

    Raises:
        CheckpointError: the file is missing, truncated/corrupt, or would need to run
            arbitrary pickled code to load (a crafted or foreign file).
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(no_such_file("checkpoint", p))
    try:
        state = torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" not in str(exc):  # unreadable bytes, not a refused object
            raise CheckpointError(
                f"checkpoint {p} is damaged or not a torch checkpoint (unreadable pickle data)"
            ) from exc
        raise CheckpointError(
            f"refused to load {p}: it contains pickled Python objects that are not plain "
            "tensors or containers, and loading it would run code from the file. medssl only "
            "loads weights-only checkpoints; if you trust the file, re-save its state_dict."
        ) from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        detail = " ".join(str(exc).split())  # one line for the CLI
        raise CheckpointError(f"checkpoint {p} is damaged or not a torch checkpoint ({detail})") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {p} holds a {type(state).__name__}, expected a mapping")
    return state


def capture_rng_state() -> Dict[str, Any]:
    """The state of every global generator (python, numpy, torch CPU and CUDA) as
    weights-only-loadable values."""
    np_state = np.random.get_state()
    state: Dict[str, Any] = {
        "python": list(random.getstate()[1]) + [random.getstate()[0]],
        "python_gauss": random.getstate()[2],
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    py = state["python"]
    random.setstate((py[-1], tuple(py[:-1]), state["python_gauss"]))
    npst = state["numpy"]
    np.random.set_state(
        ("MT19937", npst["keys"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"], npst["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
