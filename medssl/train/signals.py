"""Stop signals during pretraining: finish the step, save a checkpoint, exit with a status
that says "resume me" (and the CLI's hold on Ctrl-C while torch imports,
:func:`medssl.cli.hold_ctrl_c`).

Schedulers signal the whole job, not one process: Slurm signals every process of a job
step (``--signal=USR1@120`` before the time limit, SIGTERM at it), ``kill -TERM -PGID``,
``docker stop`` and Kubernetes the whole process group. DataLoader workers are in that
group, and torch's worker handler dies on a SIGTERM from anyone but its parent, so the
main process would learn of it as a ``RuntimeError: DataLoader worker (pid ...) is killed
by signal`` raised wherever it happens to be (often inside the checkpoint write).
:func:`protect_worker` (the loaders' ``worker_init_fn``) and :func:`workers_start_protected`
(around the fork) make workers ignore those signals, except a SIGTERM from their own
parent (torch's shutdown path), so the loop ends and shuts its workers down itself.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Any, Callable, Dict, Iterator, Sequence

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


@contextlib.contextmanager
def stop_signals(handler: Callable[[int, Any], None],
                 signals: Sequence[int] = STOP_SIGNALS) -> Iterator[None]:
    """Route ``signals`` (SIGTERM, SIGINT and SIGUSR1) to ``handler`` inside the block, then
    restore the previous handlers. Outside the main thread (where Python cannot install
    handlers) a no-op."""
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


def signal_name(signum: int) -> str:
    """``15`` -> ``"SIGTERM"`` (the number itself for an unknown signal)."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)


def exit_status(signum: int) -> int:
    """The exit status of a run stopped by ``signum`` after writing its checkpoint:
    ``128 + signum`` (143 SIGTERM, 130 SIGINT, 138 SIGUSR1), what a shell, Slurm,
    Kubernetes and docker report for a process the signal ended. Non-zero on purpose: the
    run is not finished, so a Job / restart policy that retries failures resumes it
    (``train.resume: auto``) instead of marking it complete."""
    return 128 + int(signum)


def _ignore_unless_parent_terminates(parent: int, signals: Sequence[int]) -> None:
    """Worker thread: take each blocked stop signal; a SIGTERM sent by ``parent`` (torch's
    ``terminate()`` of a worker that does not answer its shutdown message) ends the worker
    as torch's own handler would, every other one (the scheduler's) is dropped."""
    wanted = set(signals)
    while True:
        info = signal.sigwaitinfo(wanted)
        if info.si_signo == signal.SIGTERM and info.si_pid == parent:
            os._exit(0)


def protect_worker(worker_id: int = 0) -> None:
    """``worker_init_fn`` for training DataLoaders: block SIGTERM / SIGINT / SIGUSR1 in this
    worker and take them in a daemon thread that ignores all but its parent's SIGTERM."""
    del worker_id
    if not hasattr(signal, "sigwaitinfo"):  # not on macOS / Windows: leave torch's handling
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    threading.Thread(target=_ignore_unless_parent_terminates, args=(os.getppid(), STOP_SIGNALS),
                     name="medssl-worker-signals", daemon=True).start()


@contextlib.contextmanager
def workers_start_protected() -> Iterator[None]:
    """Block the stop signals in this (main) thread while DataLoader workers are forked in
    the block: a forked worker inherits the mask, so a signal that lands before its
    ``worker_init_fn`` runs waits, pending, for :func:`protect_worker` to drop it. Other
    threads of this process still take the signal, so the loop's handler sees it as usual."""
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def shutdown_workers(loader: Any) -> None:
    """End ``loader``'s persistent workers now (torch's own orderly shutdown: a stop message,
    a join, then its SIGTERM, which :func:`protect_worker` honours from the parent), rather
    than whenever the loader is garbage-collected. No workers, nothing to do."""
    iterator = getattr(loader, "_iterator", None)
    shutdown = getattr(iterator, "_shutdown_workers", None)
    if shutdown is not None:
        shutdown()
        loader._iterator = None
