"""Which KV sequence of the llama.cpp context holds what, so prompts reuse cells other sequences already hold.

Prefix reuse: prompts are admitted in token order (a depth-first walk of their prefix tree), so prompts that share
a prefix run close together. A freed sequence keeps its cells until its slot is taken again (empty slots first,
then those no waiting prompt reuses, then the least recently used), also between calls: a sequence holds its
prompt and the tokens its sample fed, so a prompt that continues an earlier sample (a particle's next step, its
resampled copies) decodes only what is new, and copies share their parent's cells (seq_cp). A prefix is reused
from at least `MIN_REUSE` tokens on, or whole when the prompt is identical (its logits are then reused too).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    from tteval.backends.sequences import Prompt

MIN_REUSE = 16  # a common prompt prefix shorter than this is decoded again rather than copied


@dataclass(eq=False)
class Slot:
    """One KV sequence of the context and what its cells hold.

    `prompt` is the request whose prompt fills positions 0 .. len(prompt.tokens) - 1 (generated tokens may follow);
    None while the sequence is empty. The cells stay after the sample using them finishes (`busy` False), until the
    slot is taken again, so that later prompts can reuse them.
    """

    seq_id: int
    prompt: Prompt | None = None
    busy: bool = False
    taken_at: int = 0  # when it was last taken (a counter), for least-recently-used eviction
    sampled: list[int] | None = None  # the token ids of its last sample: all but the last one are in the cells

    def cells(self, want: np.ndarray) -> int:
        """How many leading tokens of `want` this sequence's cells hold (its prompt, then its sample's fed tokens)."""
        if self.prompt is None:
            return 0
        n = common_prefix(self.prompt.array, want)
        fed = self.sampled[:-1] if self.sampled else ()
        if n < len(self.prompt.tokens) or not fed or n >= len(want):
            return n
        return n + common_prefix(np.asarray(fed, dtype=np.int64), want[n:])


class Slots:
    """The context's sequences: which are free, and which holds the longest prefix of a prompt to be loaded."""

    def __init__(self, n: int):
        self.all = [Slot(i) for i in range(n)]
        self._clock = 0
        self.wanted: set[int] = set()  # free slots that a waiting prompt will reuse: evicted last

    def protect(self, prompts: Sequence[Prompt]) -> None:
        """Mark the free slots holding the best reusable prefix of a waiting prompt, so they are evicted last."""
        self.wanted = set()
        for p in prompts:
            slot, n = self.donor(p.array)
            if slot is not None and not slot.busy and n >= MIN_REUSE:
                self.wanted.add(slot.seq_id)

    def n_free(self) -> int:
        return sum(not slot.busy for slot in self.all)

    def donor(self, tokens: np.ndarray) -> tuple[Slot | None, int]:
        """The slot whose prompt shares the longest prefix with `tokens`, and its length; a free slot wins a tie."""
        best: Slot | None = None
        best_n = 0
        for slot in self.all:
            if slot.prompt is None:
                continue
            n = slot.cells(tokens)
            if n > best_n or (n == best_n and best is not None and best.busy and not slot.busy):
                best, best_n = slot, n
        return best, best_n

    def take(self, prompt: Prompt, slot: Slot | None = None) -> Slot:
        """Give a free slot to a sample of `prompt`: `slot`, else the one least worth keeping (empty, else the least
        recently taken)."""
        if slot is None:
            slot = min(
                (s for s in self.all if not s.busy),
                key=lambda s: (s.prompt is not None, s.seq_id in self.wanted, s.taken_at),
            )
        assert not slot.busy
        self._clock += 1
        self.wanted.discard(slot.seq_id)
        slot.prompt, slot.busy, slot.taken_at, slot.sampled = prompt, True, self._clock, None
        return slot


def common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    """The length of the longest common prefix of two token arrays."""
    n = min(len(a), len(b))
    diff = np.flatnonzero(a[:n] != b[:n])
    return int(diff[0]) if diff.size else n
