"""The one progress protocol: every long call reports `progress(done, total, label)`.

`done` and `total` count the call's own units (forward+backward passes of a field, models of a
zoo build, stages of a bench); `label` names what is being worked on when that helps ("" if not).
A callback may ignore the label; producers leave it out when they have none, so a plain
`(done, total)` callback serves wherever no label is given.
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def __call__(self, done: int, total: int, label: str = "") -> None: ...


def sub_progress(progress: Progress | None, part: int, parts: int) -> Progress | None:
    """Report part `part` of `parts` equal parts (0-based) as a share of the whole: (done, total) of
    the part become (part * total + done, parts * total). None stays None."""
    if progress is None:
        return None

    def report(done: int, total: int, label: str = "") -> None:
        if label:
            progress(part * total + done, parts * total, label)
        else:  # plain (done, total) callbacks stay welcome
            progress(part * total + done, parts * total)

    return report
