"""An adapter's table of operations, filled by a decorator: ``@OPERATIONS.register("Name")``.

The CloudWatch, SNS and Application Auto Scaling adapters each keep one, from the operation's
wire name to the function that calls the service.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

__all__ = ["Operations"]

C = TypeVar("C", bound=Callable[..., object])


class Operations(dict[str, C]):
    def register(self, name: str) -> Callable[[C], C]:
        """A decorator that enters the function under ``name``."""

        def enter(call: C) -> C:
            self[name] = call
            return call

        return enter
