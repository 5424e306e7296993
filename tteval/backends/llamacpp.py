"""The CPU default backend: llama.cpp (llama-cpp-python's low-level API) with real multi-sequence batching.

How a `generate` call runs:
- each request's prompt is decoded once into one sequence; its KV cells are copied to the sequences of the other
  samples (llama.cpp's memory seq_cp), so the n samples share the prompt's computation;
- requests share their common token prefixes too (prefix reuse, `kv_slots`): a prompt starts from the sequence
  that already holds the longest common prefix of it (a live sample's, or a finished one's whose cells are still
  there, also from an earlier call) and decodes only the rest; see `_load_prompt`;
- all live sequences, of any number of requests (at most `max_parallel`), then decode together: one token each
  per `llama_decode` call, logits requested only for those tokens; a slot freed by a finished sample is refilled
  at once with the next waiting sample (continuous batching);
- sampling is done in numpy from the raw logits (`sampling`): one generator per (request seed, sample index) and
  one uniform draw per token, so a sample depends only on its seed, prompt and index, never on what else is in
  the batch. Resumed and sharded runs therefore reproduce the same samples.

Modules: `model_files` (which GGUF), `sampling` (numpy sampling), `llama_glue` (ctypes: KV calls, batch,
vocabulary, log), `threads` (thread count), `kv_slots` (which sequence holds what), `sequences` (request and
sample state, token accounting), and this one (the backend: context, prompt loading, the decode loop).

The KV cache is per-sequence (`kv_unified=False`): each sequence attends over its own cells only, which is faster
than a unified cache once generations are longer than the shared prompt, and keeps a sequence's arithmetic
independent of its neighbours. Across KV streams llama.cpp copies a sequence's whole stream, deferred to the start
of the next llama_decode; that copy reads the source's buffer, which only a decode writes, after first performing
pending copies, so a source may be removed or reused at once. A failed call drops all cells. Usage counts
`prompt_tokens_decoded` and `prompt_tokens_reused` (tokens taken from another sequence instead of decoded) per
prompt load; the n samples' copies of a loaded prompt count in neither.

Logprobs are those of each sampled token under the model's *raw* distribution (log-softmax of the unscaled
logits, before temperature or top-p), as vLLM reports them: RPC's perplexity, exp(mean logprob), and the
generative verifiers need the model's probabilities, not the sampler's.

Reuse must not change a single logit, or a sample would depend on which other requests shared its call (and resumed
or sharded runs would differ). llama.cpp's CPU kernels compute each token row independently of the other rows of
its batch, with one exception: flash attention switches to a tiled kernel, with other rounding (f32 instead of f16
accumulation), once a compute pass (ubatch) holds 64 or more tokens of one sequence. A prompt decoded whole would
then go through the tiled kernel and its reused-prefix suffix, often shorter, through the row kernel, with logits
up to ~0.8 apart. Passes are therefore kept at `_N_UBATCH` (48) tokens, so every token takes the row kernel, as
generated tokens always do; prompt decoding is a few percent slower for it. A reused prefix also lies in the same
cells (same positions, same order) as a freshly decoded one, so its attention sums run in the same order.
"""

from __future__ import annotations

import codecs
import secrets
import time
from collections import deque
from typing import Any, Sequence

import numpy as np

from tteval.backends.base import Completion, Request, Usage, validate_request
from tteval.backends.kv_slots import MIN_REUSE, Slot, Slots, step_rows
from tteval.backends.llama_glue import LOG_TAIL, KvOps, LlamaBatch, Vocab, init_backend, kv_ops, llama_cpp, log_hint
from tteval.backends.llama_glue import set_log
from tteval.backends.model_files import DEFAULT_MODEL, resolve_model_path
from tteval.backends.sampling import RowStats, row_stats, sample_rng
from tteval.backends.sequences import Prompt, Sample, empty_completion
from tteval.backends.threads import ThreadTuner, default_threads, env_threads
from tteval.errors import TtevalError

__all__ = ["DEFAULT_MODEL", "LlamaCppBackend", "resolve_model_path"]

_CTX_STEP = 1024  # per-sequence context grows in steps of this many tokens
_N_BATCH = 512  # prompt tokens per llama_decode call
_KV_UNIFIED = False  # one KV stream per sequence (see the module docstring)
_N_UBATCH = 48  # tokens per compute pass: below ggml's 64-query flash-attention tile (see the module docstring)
_RETUNE_STEPS = 32  # with automatic threads, re-read the CPUs this process may use every this many decode steps


class LlamaCppBackend:
    """llama-cpp-python backend: the n samples of a prompt share its KV cache and decode as parallel sequences.

    `n_ctx` is the context of one sequence (prompt + completion tokens); left as None it is sized to the longest
    prompt + max_tokens seen so far (in steps of 1024, at most the model's training context). The llama.cpp
    context holds `max_parallel` such sequences. `n_threads` defaults to $TTEVAL_LLAMA_THREADS, else one thread per CPU
    this process may use (`default_threads`, re-read at each call and every `_RETUNE_STEPS` decode steps), or one
    thread while timed decode steps show it clearly faster (`ThreadTuner`; the thread count changes no result).
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
        lc = llama_cpp()
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
        fixed = n_threads or env_threads()
        self._auto_threads = fixed is None
        self.n_threads = fixed or default_threads()
        self._tuner = ThreadTuner(self.n_threads) if self._auto_threads else None
        self.verbose = verbose
        self._fixed_ctx = n_ctx
        set_log(lc, verbose)
        self._model: Any = None
        self._ctx: Any = None
        self._batch: LlamaBatch | None = None
        init_backend(lc)
        LOG_TAIL.clear()
        self._model = lc.llama_model_load_from_file(self.model_path.encode("utf-8"), lc.llama_model_default_params())
        if not self._model:
            raise TtevalError(f"llama.cpp could not load {self.model_path}{log_hint() or ' (not a GGUF model?)'}")
        self._vocab = Vocab(lc, self._model, model)
        self.n_vocab = self._vocab.n_vocab
        self.n_ctx_train = int(lc.llama_model_n_ctx_train(self._model))
        self.model_params = int(lc.llama_model_n_params(self._model))  # run.json records it: FLOPs = 2 x params x tokens
        self._kv: KvOps | None = None
        self._slots = Slots(max_parallel)  # what each KV sequence holds; kept between calls
        self._batch = LlamaBatch(lc, max(_N_BATCH, max_parallel))
        self.n_ctx_seq = 0  # tokens per sequence of the current context (0: none yet)
        self._n_batch = self._batch.capacity
        if n_ctx is not None:
            self._make_context(n_ctx)

    # ----------------------------------------------------------------------------------------- setup
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
        LOG_TAIL.clear()
        ctx = lc.llama_init_from_model(self._model, p)
        if not ctx:
            raise TtevalError(
                f"llama.cpp could not create a context of {self.max_parallel} x {n_ctx_seq} tokens; "
                f"lower max_parallel or n_ctx{log_hint()}"
            )
        self._ctx = ctx
        self._kv = kv_ops(lc, ctx)
        self._slots = Slots(self.max_parallel)
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
    def token_name(self, tok: int) -> str:
        """A token as a string for `tokens` / `top_logprobs`: its text, undecodable partial UTF-8 as \\x escapes."""
        return self._vocab.token_name(tok)

    def tokenize(self, text: str) -> list[int]:
        """Tokenize an already templated prompt, parsing special tokens; BOS added only if the model wants one."""
        return self._vocab.tokenize(text)

    def apply_chat_template(self, messages: Sequence[tuple[str, str]]) -> str:
        """Render chat messages with the GGUF's own template (tokenizer.chat_template), generation prompt appended."""
        return self._vocab.apply_chat_template(messages)

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
            prompts.append(Prompt(i, r, tokens, seed))
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
        out = [[c if c is not None else empty_completion(p) for c in row] for p, row in zip(prompts, results)]
        self.usage.completion_tokens += sum(c.num_tokens for row in out for c in row)
        return out

    def clear_cache(self) -> None:
        """Drop every sequence's cells (after a failed call, what they hold is unknown; benchmarks start cold)."""
        self._slots = Slots(self.max_parallel)
        if self._kv is not None:
            self._kv.clear()  # cells only: stale data in free cells is masked out, as after any seq_rm

    def _run(self, work: list[Prompt], results: list[list[Completion | None]]) -> None:
        """Continuous batching: fill free sequence slots with waiting samples, step all live ones, repeat.

        Prompts are admitted in token order, so those sharing a prefix are loaded while its cells are still held;
        a sample depends only on its own request, seed and index, so the order changes no result."""
        pending = deque(sorted(work, key=lambda p: p.tokens))
        slots = self._slots
        for slot in slots.all:
            slot.busy = False
        slots.protect(pending)
        live: list[Sample] = []
        ready: list[tuple[Sample, np.ndarray, RowStats]] = []  # samples with logits to sample from
        while pending or live:
            while pending and slots.n_free():
                ready.extend(self._admit(pending[0], slots))
                if pending[0].next_sample >= pending[0].request.n:
                    pending.popleft()
            for s, logits, stats in ready:
                if s not in live:
                    live.append(s)
                s.advance(logits, stats, self._vocab)
                if s.finish is not None:
                    results[s.prompt.index][s.index] = s.completion(self._vocab)
                    live.remove(s)
                    s.slot.busy = False  # its cells stay for later prompts until the slot is taken again
            ready = []
            if live:
                ready = self._step(live)

    def _admit(self, p: Prompt, slots: Slots) -> list[tuple[Sample, np.ndarray, RowStats]]:
        """Start as many of `p`'s remaining samples as there are free slots, sharing one load of the prompt's KV."""
        k = min(slots.n_free(), p.request.n - p.next_sample)
        first = self._load_prompt(p, slots)
        taken = [first] + [self._copy_prompt(p, first, slots) for _ in range(k - 1)]
        limit_ctx = self.n_ctx_seq - len(p.tokens)  # positions n_prompt .. n_ctx_seq-1 hold fed tokens
        out = []
        for slot in taken:
            s = Sample(
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

    def _load_prompt(self, p: Prompt, slots: Slots) -> Slot:
        """Put `p`'s prompt into the KV of a free slot, decoding only what no sequence holds yet; set `p.logits`.

        The longest common prefix any sequence holds is reused if it has `MIN_REUSE` tokens or is the whole
        (identical) prompt; a free holder is taken in place, a busy one is copied. At least the last token is decoded
        unless the holder's prompt is identical (its logits are those after the same tokens)."""
        donor, shared = slots.donor(p.array)
        n = len(p.tokens)
        source = donor.prompt if donor is not None else None
        identical = source is not None and shared == n == len(source.tokens) and source.logits is not None
        reuse = n if identical else min(shared, n - 1)
        if not identical and reuse < MIN_REUSE:
            donor, source, reuse = None, None, 0
        slot = slots.take(p, donor if donor is not None and not donor.busy else None)
        if donor is not None and donor is not slot:
            self._kv.seq_cp(donor.seq_id, slot.seq_id, -1, -1)
            self._count("kv_stream_copies", 1)
        if not self._kv.seq_rm(slot.seq_id, reuse, -1) and reuse:  # a memory that cannot cut a sequence: start over
            self._kv.seq_rm(slot.seq_id, -1, -1)
            identical, reuse = False, 0
        self._count("prompt_tokens_reused", reuse)
        if not identical:
            self._decode_prompt(p, slot.seq_id, reuse)
        elif p.logits is None:
            p.logits, p.stats = source.logits, source.stats
        return slot

    def _copy_prompt(self, p: Prompt, src: Slot, slots: Slots) -> Slot:
        """Give another sample of `p` a free slot holding a copy of `src`'s prompt cells (and nothing after)."""
        slot = slots.take(p)
        self._kv.seq_cp(src.seq_id, slot.seq_id, -1, -1)
        self._count("kv_stream_copies", 1)
        self._kv.seq_rm(slot.seq_id, len(p.tokens), -1)
        return slot

    def _decode_prompt(self, p: Prompt, seq_id: int, start: int = 0) -> None:
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

    def _step(self, live: list[Sample]) -> list[tuple[Sample, np.ndarray, RowStats]]:
        """Feed every live sequence its last sampled token in one llama_decode; return each one's next logits. The
        rows go in sequence order, one-id gaps filled by dummy rows whose cells are removed after (`step_rows`)."""
        live.sort(key=lambda s: s.seq_id)
        rows, pads, passes = step_rows(live, lambda seq: self._kv.seq_pos_max(seq) + 1, self.n_ctx_seq)
        self._batch.fill([r[1] for r in rows], [r[2] for r in rows], [r[0] for r in rows],
                         np.array([r[3] for r in rows], dtype=np.int8))  # fmt: skip
        t0 = time.perf_counter()
        self._decode()
        self._retune(len(live), time.perf_counter() - t0)
        for seq, pos in pads.items():
            self._kv.seq_rm(seq, pos, -1)
        self._count("decode_steps", 1)
        self._count("decode_rows", len(live))  # sequences per step: decode_rows / decode_steps is the occupancy
        self._count("decode_passes", passes)
        self._count("decode_pad_rows", len(pads))
        if self.usage.extra["decode_steps"] % _RETUNE_STEPS == 0:
            self._retune()
        out = []
        for i, s in zip([i for i, r in enumerate(rows) if r[3]], live):
            row = self._logits_row(i)
            out.append((s, row, row_stats(row)))
        return out

    def _retune(self, rows: int = 0, seconds: float = 0.0) -> None:
        """With automatic threads, give the tuner a timed decode step of `rows` sequences, or else the CPUs this
        process may use now (`default_threads`); run the thread count it chooses."""
        if self._tuner is None:
            return
        n = self._tuner.observe(rows, seconds) if rows else self._tuner.set_cpus(default_threads())
        if n != self.n_threads:
            self.n_threads = n
            if self._ctx is not None:
                self._lc.llama_set_n_threads(self._ctx, n, n)

    def _decode(self) -> None:
        LOG_TAIL.clear()
        rc = self._lc.llama_decode(self._ctx, self._batch.raw)
        if rc != 0:
            raise TtevalError(f"llama.cpp decode failed (code {rc}){log_hint()}")

    def _logits_row(self, i: int) -> np.ndarray:
        ptr = self._lc.llama_get_logits_ith(self._ctx, i)
        if not ptr:
            raise TtevalError(f"llama.cpp returned no logits for batch position {i}")
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).copy()

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
