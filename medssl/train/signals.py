"""SIGTERM / SIGINT during pretraining: finish the step, save a checkpoint, exit cleanly
(and the CLI's hold on Ctrl-C while torch imports, :func:`medssl.cli.hold_ctrl_c`)."""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Callable, Dict, Iterator, Sequence

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextlib.contextmanager
def stop_signals(handler: Callable[[int, Any], None],
                 signals: Sequence[int] = STOP_SIGNALS) -> Iterator[None]:
    """Route ``signals`` (SIGTERM and SIGINT) to ``handler`` inside the block, then restore
    the previous handlers. Outside the main thread (where Python cannot install handlers) a
    no-op."""
    previous: Dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in signals:
            previous[sig] = signal.getsignal(sig)
            signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
