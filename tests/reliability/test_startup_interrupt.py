"""Ctrl-C while `medssl` starts up (importing torch, building the parser, reading the
config, building the model) ends with one line and status 130, never a traceback.

Before medssl's code runs -- the interpreter's own start-up (its `site` module) and runpy
looking up `medssl.__main__` -- nothing of medssl's can catch a signal (a few
milliseconds); so each SIGINT is sent a fixed delay after the child reports, via Python's
import-time log, that `medssl.cli` has been imported (the seconds of importing torch, the
config and the model come after that).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.reliability.harness import CHILD_ENV, tiny_cfg, write_yaml

pytestmark = pytest.mark.timeout(300)
_CLI_IMPORTED = re.compile(r"\|\s+medssl\.cli$")


def _sigint_as_in_a_terminal() -> None:
    # A command typed at a terminal starts with SIGINT at its default action; a test run
    # launched in the background by a non-interactive shell (`cmd &`) inherits SIGINT
    # *ignored*, and the child would then sleep through the Ctrl-C this test sends.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("delay", [0.0, 0.2, 0.6, 1.5])
def test_ctrl_c_during_startup_prints_one_line(delay: float, tmp_path: Path, sample_dir: Path) -> None:
    cfg = write_yaml(tmp_path / "cfg.yaml", tiny_cfg(sample_dir, tmp_path / "run", "simclr", max_steps=50))
    env = {**os.environ, **CHILD_ENV, "PYTHONPROFILEIMPORTTIME": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "medssl", "pretrain", str(cfg), "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=_sigint_as_in_a_terminal)
    assert proc.stderr is not None
    for line in proc.stderr:
        if _CLI_IMPORTED.search(line.rstrip()):
            break
    else:
        pytest.fail("the child never imported medssl.cli")
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=240)
    messages = [ln for ln in err.splitlines() if not ln.startswith("import time:")]
    assert "Traceback" not in err, "\n".join(messages)
    assert "KeyboardInterrupt" not in err, "\n".join(messages)
    # 130 from medssl, or (rarely, seen once in ~30 runs under heavy load, cause not found)
    # death by SIGINT after that line was printed: a shell reports both as status 130.
    if proc.returncode in (130, -signal.SIGINT):
        assert "medssl: interrupted" in messages, messages
    else:  # past the imports: the run's handler stops cleanly (status 128 + SIGINT)
        assert proc.returncode == 130 and any("stopped by signal SIGINT" in m for m in messages), messages
