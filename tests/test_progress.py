"""The shared progress display: a bar on a terminal, status lines in a log, nothing when off."""

from __future__ import annotations

import io

from medssl.progress import Progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_without_a_terminal_status_lines_name_the_stage_and_the_counts() -> None:
    log = io.StringIO()
    bar = Progress(4, "embed train (train)", unit="img", stream=log, interval=0)
    bar.set_postfix(loss="0.5000")
    bar.update(2)
    bar.update(2)
    bar.close()
    lines = log.getvalue().splitlines()
    assert lines[0].startswith("medssl: embed train (train): 2/4 img (50 %), ")
    assert "elapsed" in lines[0] and "left" in lines[0] and lines[0].endswith("loss=0.5000")
    assert lines[-1].startswith("medssl: embed train (train): 4/4 img (100 %), done in ")
    assert "\r" not in log.getvalue()  # a log file gets whole lines, never carriage returns


def test_status_lines_wait_for_the_interval() -> None:
    log = io.StringIO()
    with Progress(1000, "pretrain", unit="step", stream=log, interval=3600) as bar:
        for _ in range(1000):
            bar.update(1)
    assert log.getvalue().splitlines() == [log.getvalue().strip()]  # only the closing line
    assert "1000/1000 step (100 %), done in" in log.getvalue()


def test_a_stage_cut_short_says_stopped() -> None:
    log = io.StringIO()
    with Progress(10, "fine-tune seed 0", unit="batch", stream=log, interval=3600) as bar:
        bar.update(3)
    assert "3/10 batch (30 %), stopped after" in log.getvalue()


def test_disabled_progress_writes_nothing() -> None:
    log = io.StringIO()
    with Progress(3, "pretrain", enabled=False, stream=log, interval=0) as bar:
        bar.update(3)
        bar.write("step 3: knn_top1=0.5")
    assert log.getvalue() == ""


def test_on_a_terminal_it_is_a_tqdm_bar() -> None:
    term = _Terminal()
    with Progress(5, "linear probe, 5 seed(s)", unit="seed", stream=term) as bar:
        bar.update(5)
        bar.write("a line of its own")
    text = term.getvalue()
    assert "\r" in text and "linear probe, 5 seed(s)" in text and "5/5" in text
    assert "a line of its own\n" in text
    assert "medssl: linear" not in text  # no status lines on top of the bar
