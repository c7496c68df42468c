"""Work started from the request path and finished off it (settling a reservation, publishing a change).

asyncio keeps only a weak reference to a task: one nobody holds may be collected before it
runs. `Background` holds each until it is done, and at shutdown lets what is under way end:
a settlement cut off when Redis closes would leave its reservation counted against the budget
until the period resets.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

FINISH_TIMEOUT = 5.0


class Background:
    __slots__ = ("tasks",)

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def finish(self, timeout: float = FINISH_TIMEOUT) -> None:
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=timeout)
