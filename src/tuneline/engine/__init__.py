"""How the data stages run: the same per-block functions on worker processes (``local``) or on Ray (``ray``).

A stage plans its input as :class:`~tuneline.engine.blocks.Block`\\ s, maps a pure, idempotent function over
them with an :class:`~tuneline.engine.executors.Executor`, and takes every ordered decision from the block
results in its driver. Which engine ran a block changes nothing in what it returns, so both engines keep and
remove the same records.
"""

from tuneline.engine.executors import Executor, executor_for, release_freed_memory

__all__ = ["Executor", "executor_for", "release_freed_memory"]
