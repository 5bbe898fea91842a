"""How many associations each receiving process holds, for the receiving processes to read.

The parent of a multi-process `pacsd serve` counts the connections it hands to each receiving
process and the closes they report; it writes those counts into one shared memory page made
before it forks, so every receiving process can ask, without a message, whether another one is
receiving too (`others_busy`).  A receiving process that receives alone commits its index rows
itself instead of through the writer process (`pacsd.index.solo_writer`).

One writer (the parent's single thread), aligned 4-byte slots: a reader sees an old or a new
count, never a torn one.  A count that is a moment late only means one group takes the other
path; both paths are correct at any time.
"""

from __future__ import annotations

import mmap


class ReceivingLoad:
    """Open associations per receiving process (numbered from 1), in memory shared across fork."""

    def __init__(self, receivers: int) -> None:
        self.receivers = receivers
        self._page = mmap.mmap(-1, max(4 * receivers, mmap.PAGESIZE))  # MAP_SHARED | MAP_ANONYMOUS
        self._counts = memoryview(self._page).cast("i")

    def set(self, number: int, open_associations: int) -> None:
        """The parent: receiving process `number` now holds `open_associations`."""
        self._counts[number - 1] = open_associations

    def open(self, number: int) -> int:
        return self._counts[number - 1]

    def others_busy(self, number: int) -> bool:
        """Whether any receiving process other than `number` holds an association."""
        counts = self._counts
        return any(counts[i] for i in range(self.receivers) if i != number - 1)
