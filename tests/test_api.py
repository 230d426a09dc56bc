from __future__ import annotations

import subprocess
import sys

import medssl


def test_every_public_name_resolves() -> None:
    for name in medssl.__all__:
        assert getattr(medssl, name) is not None, name


def test_import_is_light() -> None:
    code = "import sys, medssl; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_unknown_attribute() -> None:
    try:
        medssl.no_such_thing  # noqa: B018
    except AttributeError as exc:
        assert "no_such_thing" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("expected AttributeError")
