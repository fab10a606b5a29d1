"""Running sans-IO generators: one sync and one async driver for every effect protocol.

convkit's deciding code is written as generators that yield *effects* (a SQL statement, a
summary request, a hook call, an HTTP request) and receive each effect's result. A driver pairs
such a generator with a handler that performs the effects:

* the handler's return value is sent back into the generator;
* an ``Exception`` the handler raises is thrown into the generator at the ``yield``, so the
  deciding code handles failures where it made the request (a duplicate key, a failed summary);
* the generator's return value is the driver's return value.

If the driver is interrupted by a ``BaseException`` that is not an ``Exception`` (a
``KeyboardInterrupt``, a task cancellation) the generator is closed before it propagates, so its
``finally`` blocks run.

Example::

    def steps():
        answer = yield "question"
        return answer.upper()

    drive(steps(), lambda effect: "yes")  # "YES"
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from typing import Any, TypeVar

__all__ = ["adrive", "drive"]

E = TypeVar("E")
R = TypeVar("R")


def drive(steps: Generator[E, Any, R], handle: Callable[[E], Any]) -> R:
    """Run ``steps`` to completion, performing each yielded effect with ``handle``."""
    try:
        effect = next(steps)
        while True:
            try:
                result = handle(effect)
            except Exception as exc:
                effect = steps.throw(exc)
            else:
                effect = steps.send(result)
    except StopIteration as stop:
        value: R = stop.value
        return value
    except BaseException:
        steps.close()
        raise


async def adrive(steps: Generator[E, Any, R], handle: Callable[[E], Awaitable[Any]]) -> R:
    """Async form of :func:`drive`: ``handle`` returns an awaitable, awaited before sending."""
    try:
        effect = next(steps)
        while True:
            try:
                result = await handle(effect)
            except Exception as exc:
                effect = steps.throw(exc)
            else:
                effect = steps.send(result)
    except StopIteration as stop:
        value: R = stop.value
        return value
    except BaseException:
        steps.close()
        raise
