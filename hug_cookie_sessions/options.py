"""Reading the middleware's options, which often come from the environment as text.

``SessionMiddleware(secret, idle_timeout=os.environ["IDLE"])`` should work with
``"3600"`` and fail at start-up, naming the option, with ``"an hour"``: a
misconfiguration found at the first request that needs it is found too late.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Union

Number = Union[int, float]


def number_option(name: str, value: Any) -> Number:
    """``value`` as a number, for an option that may come from the environment as text
    (``"0.1"``); ValueError naming the option and the value for anything else."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    try:
        number = float(value) if isinstance(value, str) else None
    except ValueError:
        number = None
    if number is None or not math.isfinite(number):
        raise ValueError(f"{name} must be a number, not {value!r}")
    return int(number) if number.is_integer() else number


def seconds_option(name: str, value: Any) -> Optional[Number]:
    """A timeout option: a positive number of seconds (text such as ``"3600"`` is read), or None."""
    if value is None:
        return None
    seconds = number_option(name, value)
    if seconds <= 0:
        raise ValueError(f"{name} must be a positive number of seconds or None, not {value!r}")
    return seconds
