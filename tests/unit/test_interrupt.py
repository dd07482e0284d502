"""SIGINT/SIGTERM handling: exceptions with the right exit code, signals held during a commit (no TensorFlow)."""

from __future__ import annotations

import os
import signal
import time

import pytest

from edgeexport import interrupt


@pytest.fixture
def installed() -> object:
    previous = interrupt.install()
    yield previous
    interrupt.restore(previous)


def _wait_for_signal() -> None:
    for _ in range(100):  # the handler runs at the next bytecode boundary of the main thread
        time.sleep(0.01)


def test_sigterm_raises_terminated_with_exit_143(installed: object) -> None:
    with pytest.raises(interrupt.Terminated) as caught:
        os.kill(os.getpid(), signal.SIGTERM)
        _wait_for_signal()
    assert interrupt.exit_code(caught.value) == 143


def test_sigint_raises_keyboard_interrupt_with_exit_130(installed: object) -> None:
    with pytest.raises(KeyboardInterrupt) as caught:
        os.kill(os.getpid(), signal.SIGINT)
        _wait_for_signal()
    assert interrupt.exit_code(caught.value) == 130


def test_a_signal_during_a_commit_waits_for_its_end(installed: object) -> None:
    steps = []
    with pytest.raises(KeyboardInterrupt):
        with interrupt.deferred_signals():
            os.kill(os.getpid(), signal.SIGINT)
            _wait_for_signal()
            steps.append("renamed everything")
        steps.append("after the block")
    assert steps == ["renamed everything"]
