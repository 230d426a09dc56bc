"""medssl.tracking without MLflow: a clear error when tracking is asked for, nothing otherwise."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from medssl.errors import ConfigError
from medssl.tracking import MLflowRun, normalise_uri


def test_tracking_without_mlflow_installed_says_how_to_install_it(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # `import mlflow` now raises ImportError
    with pytest.raises(ConfigError, match=r"tracking\.mlflow_uri is set but MLflow is not installed: "
                                          r"pip install 'medssl\[mlflow\]'"):
        MLflowRun.for_run_dir(tmp_path, str(tmp_path / "mlruns"), "e", None)
    (tmp_path / "mlflow.json").write_text('{"tracking_uri": "file:///x", "run_id": "r"}')
    assert MLflowRun.linked(tmp_path) is None  # a transfer of a tracked run still works without it


def test_plain_paths_become_absolute_file_uris(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    monkeypatch.chdir(tmp_path)
    assert normalise_uri("mlruns") == (tmp_path / "mlruns").as_uri()
    import os

    assert os.environ["MLFLOW_ALLOW_FILE_STORE"] == "true"  # a local store named here is a choice
    assert normalise_uri("http://mlflow.lab:5000") == "http://mlflow.lab:5000"
