"""Progress of long work, shown the way the output stream can take it.

On a terminal a ``tqdm`` bar; when stderr is a file or a pipe (a batch job's log, CI) one
plain line every ``interval`` seconds and one when the stage ends, because a bar's
carriage returns turn a log into one unreadable line; nothing when disabled
(``--no-progress``). Every long command (pretrain, transfer, evaluate, embed) uses
:class:`Progress`, so they all look and switch off alike.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any, Optional

DEFAULT_INTERVAL = 30.0  # seconds between status lines when stderr is not a terminal


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class Progress:
    """Progress of one named stage (``"embed train"``, ``"fine-tune seed 0"``, ...).

    Args:
        total: units of work in the stage (``None`` when unknown).
        desc: the stage name shown before the counts.
        enabled: ``False`` shows nothing (``--no-progress``; non-zero DDP ranks).
        unit: what one unit is (``"img"``, ``"step"``, ``"seed"``), shown with the rate.
        initial: units already done (a resumed run).
        stream: where to write; default ``sys.stderr`` (looked up when the stage starts).
        interval: seconds between status lines when ``stream`` is not a terminal
            (``0``: a line at every update).
    """

    def __init__(self, total: Optional[int], desc: str, *, enabled: bool = True, unit: str = "it",
                 initial: int = 0, stream: Optional[IO[str]] = None, interval: float = DEFAULT_INTERVAL) -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.n = initial
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        self.postfix: dict = {}
        self._bar: Any = None
        self._start = time.perf_counter()
        self._last_line = self._start
        self._initial = initial
        self._closed = False
        if enabled and _is_tty(self.stream):
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True,
                             file=self.stream)

    def update(self, n: int = 1) -> None:
        """``n`` more units are done."""
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.enabled and time.perf_counter() - self._last_line >= self.interval:
            self._line()

    def set_postfix(self, **values: Any) -> None:
        """Values shown after the counts (``loss=0.52``), until replaced."""
        self.postfix = dict(values)
        if self._bar is not None:
            self._bar.set_postfix(**values)

    def write(self, message: str) -> None:
        """A line of its own that does not break the bar."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(message, file=self.stream)
        else:
            print(message, file=self.stream, flush=True)

    def close(self) -> None:
        """End the stage; without a terminal, one last line with the time it took."""
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        elif self.enabled:
            self._line(done=True)

    def status(self, done: bool = False) -> str:
        """The one-line status: ``medssl: embed train: 512/1000 img (51 %), 12 s, ~11 s left, loss=0.5``;
        when ``done``, the time taken and the rate (``done in 24 s, 41.7 img/s``)."""
        elapsed = time.perf_counter() - self._start
        count = f"{self.n}/{self.total}" if self.total is not None else f"{self.n}"
        parts = [f"{count} {self.unit}"]
        if self.total:
            parts[0] += f" ({100 * self.n / self.total:.0f} %)"
        if done:
            finished = self.total is None or self.n >= self.total
            parts.append(f"{'done in' if finished else 'stopped after'} {_duration(elapsed)}")
            if self.n > self._initial and elapsed > 0:  # the throughput, e.g. embedding img/s
                parts.append(f"{(self.n - self._initial) / elapsed:,.1f} {self.unit}/s")
        else:
            parts.append(f"{_duration(elapsed)} elapsed")
            rate = (self.n - self._initial) / elapsed if elapsed > 0 else 0.0
            if self.total is not None and rate > 0 and self.n < self.total:
                parts.append(f"~{_duration((self.total - self.n) / rate)} left")
        parts += [f"{k}={v}" for k, v in self.postfix.items()]
        return f"medssl: {self.desc}: " + ", ".join(parts)

    def _line(self, done: bool = False) -> None:
        self._last_line = time.perf_counter()
        print(self.status(done), file=self.stream, flush=True)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _is_tty(stream: IO[str]) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or file-like without isatty
        return False
