"""When work on a request stops: a ``Deadline`` checked between the steps of long work (before
the forward pass, between two persons of post-processing and of encoding), so that work
nobody waits for any more stops within one step instead of running to the end.

The one home of the idea: the service makes one ``Deadline`` per request; the batcher, the
``Predictor`` and the encoders only check it. Code without a deadline (the command line,
video jobs) passes nothing: ``NO_DEADLINE`` never passes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass


class DeadlineExceeded(Exception):
    """Work stopped because its deadline passed; the message says where it stopped."""


@dataclass(frozen=True)
class Deadline:
    """A point in time after which a piece of work is abandoned.

    Attributes:
        at: the time it passes, in seconds of ``clock``.
        clock: seconds, monotonic (``time.monotonic``; tests pass a fake one).
    """

    at: float
    clock: Callable[[], float] = time.monotonic

    @classmethod
    def after(cls, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> Deadline:
        """The deadline ``seconds`` from now on ``clock``."""
        return cls(clock() + seconds, clock)

    def remaining_s(self) -> float:
        """Seconds left (<= 0 once it has passed; ``inf`` for ``NO_DEADLINE``)."""
        return self.at - self.clock()

    @property
    def expired(self) -> bool:
        return self.clock() >= self.at

    def check(self, where: str) -> None:
        """Raise if the deadline has passed: called between two steps of work.

        Args:
            where: the step about to start, for the message ("before person 3 of 5").

        Raises:
            DeadlineExceeded: the deadline has passed.
        """
        if self.expired:
            raise DeadlineExceeded(f"the deadline passed {where}")


NO_DEADLINE = Deadline(math.inf)
"""Never passes: the default of every function that takes a deadline."""
