"""The one spelling of a moment in documents, tags and logs: ISO 8601 in UTC, ending in ``Z``.

The callers read the clock; this only formats, so it stays pure and testable.
"""

from __future__ import annotations

import time


def iso_utc(seconds: float, *, milliseconds: bool = True) -> str:
    """``seconds`` since the epoch as ``YYYY-MM-DDTHH:MM:SS[.mmm]Z`` (milliseconds truncated).

    >>> iso_utc(1700000000.1239)
    '2023-11-14T22:13:20.123Z'
    >>> iso_utc(1700000000.9, milliseconds=False)
    '2023-11-14T22:13:20Z'
    >>> iso_utc(1e13)  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    ValueError: 1e+13 seconds is beyond the year 9999
    """
    try:
        whole, ms = divmod(int(seconds * 1000), 1000)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
    except (OverflowError, OSError, ValueError):
        raise ValueError(f"{seconds!r} seconds is beyond the year 9999") from None
    if len(stamp) != 19:  # gmtime takes years past 9999 on some platforms: not ISO 8601 any more
        raise ValueError(f"{seconds!r} seconds is beyond the year 9999")
    return stamp + (f".{ms:03d}Z" if milliseconds else "Z")
