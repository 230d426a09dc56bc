"""medssl/cli.py: Ctrl-C held while the command modules import torch."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from medssl.cli import hold_ctrl_c


@pytest.fixture(autouse=True)
def default_sigint():
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_inside_the_block_is_raised_when_it_ends() -> None:
    reached_end_of_block = False
    with pytest.raises(KeyboardInterrupt):
        with hold_ctrl_c():
            os.kill(os.getpid(), signal.SIGINT)
            # Python runs signal handlers between bytecodes: give it a few
            for _ in range(1000):
                pass
            reached_end_of_block = True
    assert reached_end_of_block
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_no_ctrl_c_no_interrupt_and_the_handler_is_restored() -> None:
    with hold_ctrl_c():
        pass
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_an_ignored_sigint_stays_ignored() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with hold_ctrl_c():
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(1000):
            pass
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN


def test_outside_the_main_thread_it_does_nothing() -> None:
    seen = []

    def worker() -> None:
        with hold_ctrl_c():
            seen.append(signal.getsignal(signal.SIGINT))

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen == [signal.default_int_handler]
