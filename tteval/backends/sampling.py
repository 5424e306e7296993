"""Sampling from raw logits in numpy, one row at a time, so a token never depends on the other rows of a batch.

One generator per (request seed, sample index) and one uniform draw per token: a sample is a pure function of its
seed, prompt and index. Logprobs are under the model's raw distribution (before temperature or top-p).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_TOP_P_FIRST = 64  # top-p first looks for the nucleus among this many most likely tokens
_SEED_MASK = (1 << 64) - 1
_CDF_BLOCK = 256  # inverse-CDF sampling sums the vocabulary in blocks of this many tokens


@dataclass(frozen=True)
class RowStats:
    """Summary of one row of raw logits: its maximum and log-partition (log-sum-exp), in float64."""

    max: float
    logz: float


def row_stats(logits: np.ndarray) -> RowStats:
    """Max and log-sum-exp of one logits row; computed per row so the result never depends on other rows."""
    m = float(logits.max())
    total = np.exp(logits - np.float32(m)).sum(dtype=np.float64)
    return RowStats(m, m + float(np.log(total)))


def sample_token(logits: np.ndarray, stats: RowStats, temperature: float, top_p: float, u: float) -> int:
    """Pick a token from raw logits: argmax at temperature 0, else softmax(logits / T) cut to the top-p nucleus.

    `u` in [0, 1) is the one uniform draw that decides the token (inverse-CDF sampling), so the choice is a pure
    function of (logits, temperature, top_p, u).
    """
    if temperature <= 0.0:
        return int(np.argmax(logits))
    # divide (not multiply by 1/T): the top token's 0 stays 0 even when 1/T overflows float32
    weights = np.exp((logits - np.float32(stats.max)) / np.float32(max(temperature, 1e-30)))
    if top_p >= 1.0:
        return inverse_cdf(weights, u)
    total = weights.sum(dtype=np.float64)
    k = min(_TOP_P_FIRST, len(weights))
    while True:
        cand = np.argpartition(-weights, k - 1)[:k] if k < len(weights) else np.arange(len(weights))
        cand = cand[np.lexsort((cand, -weights[cand]))]  # most likely first, ties by token id
        cdf = np.cumsum(weights[cand], dtype=np.float64)
        if cdf[-1] >= top_p * total or k == len(weights):
            break
        k = min(4 * k, len(weights))
    keep = min(int(np.searchsorted(cdf, top_p * total, side="left")) + 1, len(cand))
    pick = min(int(np.searchsorted(cdf[:keep], u * cdf[keep - 1], side="right")), keep - 1)
    return int(cand[pick])


def inverse_cdf(weights: np.ndarray, u: float) -> int:
    """The index i with cdf(i-1) <= u * total < cdf(i) for non-negative weights (not all zero).

    Two levels (sums of blocks of 256, then a cumulative sum inside one block) instead of a float64 cumulative
    sum over the whole vocabulary, which costs ~0.5 ms a row.
    """
    n = len(weights)
    nb = -(-n // _CDF_BLOCK)
    pad = nb * _CDF_BLOCK - n
    padded = weights if pad == 0 else np.concatenate([weights, np.zeros(pad, weights.dtype)])
    blocks = padded.reshape(nb, _CDF_BLOCK)
    cum = np.cumsum(blocks.sum(axis=1, dtype=np.float64))
    target = u * cum[-1]
    b = min(int(np.searchsorted(cum, target, side="right")), nb - 1)
    while b > 0 and cum[b] == cum[b - 1]:  # rounding landed on an empty block: step back to one with mass
        b -= 1
    inner = np.cumsum(blocks[b], dtype=np.float64)
    rest = target - (cum[b - 1] if b else 0.0)
    i = min(int(np.searchsorted(inner, rest, side="right")), _CDF_BLOCK - 1)
    while i > 0 and blocks[b, i] == 0:  # clamped past the block's last token with mass
        i -= 1
    return b * _CDF_BLOCK + i


def top_logprob_ids(logits: np.ndarray, stats: RowStats, k: int) -> list[tuple[int, float]]:
    """The k most likely tokens under the raw distribution, as (token id, logprob), most likely first."""
    k = min(k, len(logits))
    cand = np.argpartition(-logits, k - 1)[:k] if k < len(logits) else np.arange(len(logits))
    cand = cand[np.lexsort((cand, -logits[cand]))]
    return [(int(t), float(logits[t]) - stats.logz) for t in cand]


def sample_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of sample `index` of a request seeded `seed`: the same pair always gives the same stream."""
    return np.random.default_rng([seed & _SEED_MASK, index])
