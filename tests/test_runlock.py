"""The run-directory lock, held by one real process and contended by another."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from medssl.errors import ConfigError
from medssl.runlock import LOCK_NAME, RunDirBusy, RunLock

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="flock is POSIX")

# A second process that takes the lock, says so, and holds it until stdin closes.
HOLDER = """
import sys
from medssl.runlock import RunLock
with RunLock(sys.argv[1], "out_dir"):
    print("locked", flush=True)
    sys.stdin.read()
"""


@pytest.fixture
def holder(tmp_path: Path) -> Iterator["subprocess.Popen[str]"]:
    """A child process holding the lock on ``tmp_path / 'run'``."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / "run")], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def test_a_second_process_is_refused_naming_the_holder_pid(tmp_path: Path,
                                                           holder: "subprocess.Popen[str]") -> None:
    with pytest.raises(RunDirBusy, match=rf"run \(out_dir\) is in use by another medssl process "
                                         rf"\(pid {holder.pid} on .*\); wait for it to finish"):
        RunLock(tmp_path / "run", "out_dir").acquire()


def test_the_lock_is_released_when_the_holder_ends(tmp_path: Path, holder: "subprocess.Popen[str]") -> None:
    assert holder.stdin is not None
    holder.stdin.close()  # the holder leaves its `with` block and exits
    assert holder.wait(timeout=60) == 0
    with RunLock(tmp_path / "run") as lock:
        assert f"pid {os.getpid()} " in lock.path.read_text()


def test_a_sigkilled_holder_leaves_no_stale_lock(tmp_path: Path, holder: "subprocess.Popen[str]") -> None:
    """The kernel drops an flock with its last descriptor, so no stale-lock cleanup exists
    to get wrong: the lock file stays (naming the dead PID) but is free."""
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=60)
    assert (tmp_path / "run" / LOCK_NAME).read_text().startswith(f"pid {holder.pid} ")
    with RunLock(tmp_path / "run"):
        pass


def test_released_on_an_exception_and_reusable(tmp_path: Path) -> None:
    with pytest.raises(KeyError):
        with RunLock(tmp_path / "run"):
            raise KeyError("boom")
    lock = RunLock(tmp_path / "run").acquire()
    with pytest.raises(RunDirBusy):  # a second descriptor in the same process is refused too
        RunLock(tmp_path / "run").acquire()
    lock.release()
    lock.release()  # twice is harmless


def test_an_unwritable_directory_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "file.txt").write_text("not a folder")
    with pytest.raises(ConfigError, match=r"cannot write the run directory .*file\.txt/run \(--out\): "
                                          r"Not a directory; choose a writable --out"):
        RunLock(tmp_path / "file.txt" / "run", "--out").acquire()
