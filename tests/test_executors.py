"""The local engine's executor: results in task order, and a dead worker is an error, never a hang."""

from __future__ import annotations

import os
import time

import pytest

from tuneline.engine.executors import EngineError, LocalExecutor


def _slow_square(x: int) -> int:
    time.sleep(0.05 * (5 - x % 5))  # later tasks finish first
    return x * x


def _die_on_three(x: int) -> int:
    if x == 3:
        os._exit(1)  # as the OOM killer would end it: no exception, no cleanup
    return x


def test_results_come_in_task_order_whatever_order_workers_finish_in():
    ex = LocalExecutor(2)
    try:
        assert list(ex.imap(_slow_square, list(range(10)))) == [x * x for x in range(10)]
    finally:
        ex.close()


def test_a_worker_that_dies_fails_the_map_with_a_clear_error():
    ex = LocalExecutor(2)
    try:
        with pytest.raises(EngineError, match="worker process died while running _die_on_three"):
            list(ex.imap(_die_on_three, list(range(8))))
    finally:
        ex.close()
