"""App-wide messages: the live feed's worker reaches the UI only through these."""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message


@dataclass
class FramesArrived(Message):
    """New frames or control replies wait in the app's inbox (one pending message is enough)."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, FramesArrived)


@dataclass
class FeedStatus(Message):
    """The live connection's state or counters changed."""

    connection: str
    frames_received: int
    gaps_filled: int
    error: str = ""
    gaps_lost: int = 0
    """Gaps the trainer could not fill either (it keeps no recording): frames this UI never saw."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, FeedStatus)


@dataclass
class FeedFailed(Message):
    """The live feed could not start or died (bad endpoint, ...)."""

    error: str
