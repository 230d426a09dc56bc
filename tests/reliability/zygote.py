"""A pre-imported ``medssl`` launcher for the crash-safety test (not a test module).

Importing torch, timm and medssl takes seconds on a busy 2-core machine, and the crash
test starts the CLI many times; so this process imports them once and then, for each JSON
line ``{"argv": [...], "log": PATH}`` read on stdin, forks a child that runs
``medssl.cli.main(argv)`` (exactly what ``python -m medssl ARGV`` runs) with its output
sent to ``log``. It answers ``pid <PID>`` as soon as the child exists and
``exit <PID> <STATUS>`` once it ended (STATUS is negative for a signal, like Popen).
"""

from __future__ import annotations

import json
import os
import sys


def _child(argv: list, log: str) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    code = 1
    try:
        from medssl.cli import main

        code = main(argv)
    except BaseException:  # noqa: BLE001 - report, then leave without running the parent's atexit
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def serve() -> None:
    import medssl.cli  # noqa: F401 - the imports every child would otherwise repeat
    import medssl.train.loop  # noqa: F401
    import timm  # noqa: F401

    print("ready", flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(req["argv"], req["log"])
        print(f"pid {pid}", flush=True)
        _, status = os.waitpid(pid, 0)
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        print(f"exit {pid} {code}", flush=True)


if __name__ == "__main__":
    serve()
