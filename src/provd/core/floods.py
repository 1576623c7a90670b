"""How many log lines a flood of packets from one sender may cost (docs/design.md §9: at most one line per second
per sender; the rest counted and summarised). Pure: the time is a parameter; the daemon logs.

Every line written for a sender (an event's own line or a summary) opens a new window for it; events
inside the window are only counted. The count rides on the sender's next line, or, when the flood has
stopped, on a summary that `flush` hands out once the window has passed. The table is bounded: spoofed
source addresses cannot grow it without limit; senders beyond it share one entry, `OTHERS`.
"""

from __future__ import annotations

from dataclasses import dataclass

OTHERS = "other senders"


@dataclass(frozen=True)
class Admission:
    log: bool  # write this event's line
    sender: str  # the entry it was counted under (the sender, or OTHERS when the table is full)
    suppressed: int = 0  # when `log`: events of this entry left out since its last line, to say so


@dataclass(frozen=True)
class Summary:
    sender: str
    suppressed: int


@dataclass
class _Window:
    opened: float
    suppressed: int = 0


class FloodLimiter:
    def __init__(self, *, interval: float = 1.0, max_senders: int = 256) -> None:
        self.interval = interval
        self.max_senders = max_senders
        self._windows: dict[str, _Window] = {}

    def admit(self, sender: str, now: float) -> Admission:
        """Whether the event from `sender` at `now` gets its own line."""
        key = self._key(sender, now)
        window = self._windows.get(key)
        if window is not None and now - window.opened < self.interval:
            window.suppressed += 1
            return Admission(False, key)
        suppressed = window.suppressed if window is not None else 0
        self._windows[key] = _Window(now)
        return Admission(True, key, suppressed)

    def flush(self, now: float) -> list[Summary]:
        """Summaries of the counts whose window has passed (each opens a new window: it is a line too);
        senders quiet for a whole window are forgotten."""
        out = []
        for key, window in list(self._windows.items()):
            if now - window.opened < self.interval:
                continue
            if window.suppressed:
                out.append(Summary(key, window.suppressed))
                self._windows[key] = _Window(now)
            else:
                del self._windows[key]
        return out

    def next_flush(self) -> float | None:
        """When `flush` will next have a summary to give, or None while nothing is counted."""
        due = [w.opened + self.interval for w in self._windows.values() if w.suppressed]
        return min(due) if due else None

    def _key(self, sender: str, now: float) -> str:
        if sender in self._windows or len(self._windows) < self.max_senders:
            return sender
        for key, window in list(self._windows.items()):  # make room: forget the quiet ones
            if not window.suppressed and now - window.opened >= self.interval:
                del self._windows[key]
        return sender if len(self._windows) < self.max_senders else OTHERS
