"""The date and time now, for a model that cannot know it."""
from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

SAFE = True


def date_time(timezone_name: str = "") -> str:
    """The current date, weekday and time.

    Args:
        timezone_name: An IANA time zone such as Europe/Paris; empty for the server's local time.
    """
    if timezone_name:
        try:
            now = datetime.now(ZoneInfo(timezone_name))
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{timezone_name!r} is not a known time zone (try Europe/Paris or UTC)") from None
    else:
        now = datetime.now(UTC).astimezone()
    return now.strftime("%A %Y-%m-%d %H:%M:%S %Z (UTC%z)")
