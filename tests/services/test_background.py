"""Draining work started in the background ends, whatever state the tasks are in."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

import pytest

from apiward.services.background import TaskSet

pytestmark = pytest.mark.anyio

# Every task has finished, and their done-callbacks (which empty the set) are still
# queued when the drain starts: the state in which a loop of ``gather`` never yields
# on Python 3.12 and later. Run in a child process, so a spin fails the test instead
# of holding this process's loop forever.
FINISHED_BEFORE_DRAIN = textwrap.dedent(
    """
    import asyncio
    from apiward.services.background import {name}

    async def nothing():
        pass

    async def main():
        tasks = {name}(**{kwargs})
        for _ in range(3):
            tasks.{start}(nothing(){extra})
        await asyncio.sleep(0)
        await tasks.drain()
        assert len(tasks) == 0 if hasattr(tasks, "__len__") else True
        print("drained")

    asyncio.run(main())
    """
)


@pytest.mark.parametrize(
    ("name", "kwargs", "start", "extra"),
    [("TaskSet", "{}", "start", ""), ("Background", "{'log': None}", "later", ", 'w'")],
)
def test_drain_ends_when_every_task_finished_before_it(
    name: str, kwargs: str, start: str, extra: str
) -> None:
    script = FINISHED_BEFORE_DRAIN.format(name=name, kwargs=kwargs, start=start, extra=extra)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "drained"


async def test_drain_waits_for_work_started_while_draining() -> None:
    tasks = TaskSet()
    finished: list[str] = []

    async def second() -> None:
        await asyncio.sleep(0.01)
        finished.append("second")

    async def first() -> None:
        await asyncio.sleep(0.01)
        tasks.start(second())
        finished.append("first")

    tasks.start(first())
    await tasks.drain()
    assert finished == ["first", "second"]
    assert len(tasks) == 0


async def test_a_failing_task_does_not_stop_the_drain() -> None:
    tasks = TaskSet()
    finished: list[int] = []

    async def fails() -> None:
        raise RuntimeError("boom")

    async def works() -> None:
        await asyncio.sleep(0.01)
        finished.append(1)

    tasks.start(fails())
    tasks.start(works())
    await tasks.drain()
    assert finished == [1]
