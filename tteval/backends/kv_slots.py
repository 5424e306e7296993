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
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

if TYPE_CHECKING:
    from tteval.backends.sequences import Prompt, Sample

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


def step_rows(
    live: Sequence[Sample], next_pos: Callable[[int], int], n_ctx_seq: int
) -> tuple[list[tuple[int, int, int, bool]], dict[int, int], int]:
    """The rows of one decode step over the `live` samples: (sequence, token, position, is a sample's), in sequence
    order, the dummy rows among them as {sequence: position}, and the compute passes they take.

    llama.cpp computes a batch over several KV streams in passes of consecutive sequence ids (split_equal,
    sequential), so rows in any other order cost extra passes, and so does each gap left by a finished sample. On the
    CPU model a pass costs about two rows (13 sequences: 107 ms in one pass, 147 ms in four, 125 ms in one with three
    dummy rows), so a one-id gap gets a dummy row at its stream's next position (`next_pos`; its cell is to be
    removed after the decode, and its logits are not asked for), unless that stream is full."""
    rows = sorted((s.seq_id, s.token_ids[-1], len(s.prompt.tokens) + len(s.token_ids) - 1, True) for s in live)
    pads: dict[int, int] = {}
    for a, b in zip(rows, rows[1:]):
        if b[0] == a[0] + 2 and (pos := next_pos(a[0] + 1)) < n_ctx_seq:
            pads[a[0] + 1] = pos
    rows = sorted(rows + [(seq, 0, pos, False) for seq, pos in pads.items()])
    passes = 1 + sum(b[0] != a[0] + 1 for a, b in zip(rows, rows[1:]))
    return rows, pads, passes


def common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    """The length of the longest common prefix of two token arrays."""
    n = min(len(a), len(b))
    diff = np.flatnonzero(a[:n] != b[:n])
    return int(diff[0]) if diff.size else n
