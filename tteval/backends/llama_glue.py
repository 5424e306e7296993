"""ctypes glue to llama.cpp (llama-cpp-python's low-level API): the import, KV-cache sequence calls, a reusable
batch, a model's vocabulary (tokenizing, token text, chat template) and llama.cpp's log."""

from __future__ import annotations

import ctypes
import os
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from tteval.errors import TtevalError


# llama.cpp's CPU backend runs its threads with OpenMP (libgomp): a thread that reaches a barrier first spins
# GOMP_SPINCOUNT times (300,000 by default: milliseconds) before it sleeps. Beside busy processes its partner is
# often descheduled, and the spinning burns the CPU time both need: two threads beside two busy processes made
# 2-4 tokens/s against ~208 quiet (bench/results/load.json). 1,000 spins (microseconds) cover a barrier on a quiet
# machine (208 tokens/s either way) and end the collapse (49-87 tokens/s; 10,000 still collapsed 2-3x; passive,
# no spinning, costs a third of the quiet speed). libgomp reads it once, when it is loaded, so it is set before
# llama_cpp is imported; a value the user set (GOMP_SPINCOUNT or OMP_WAIT_POLICY) is kept.
GOMP_SPINCOUNT = "1000"


def llama_cpp() -> Any:
    """The llama_cpp module (with libgomp's barrier spinning bounded, see GOMP_SPINCOUNT), or one line saying how to
    install it."""
    if not any(k in os.environ for k in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")):
        os.environ["GOMP_SPINCOUNT"] = GOMP_SPINCOUNT
    try:
        import llama_cpp as lc
    except ImportError as exc:  # the [cpu] extra
        raise TtevalError(f"the llamacpp backend needs llama-cpp-python ({exc}): pip install 'tteval[cpu]'") from None
    return lc


@dataclass
class KvOps:
    """The KV-cache calls of whichever llama.cpp API generation is installed (memory_* / kv_self_* / kv_cache_*)."""

    clear: Callable[[], None]
    seq_cp: Callable[[int, int, int, int], None]
    seq_rm: Callable[[int, int, int], bool]
    seq_pos_max: Callable[[int], int]  # a sequence's last position (-1: empty)


def kv_ops(lc: Any, ctx: Any) -> KvOps:
    """The KV-cache calls for context `ctx`."""
    if hasattr(lc, "llama_memory_seq_cp") and hasattr(lc, "llama_get_memory"):
        mem = lc.llama_get_memory(ctx)
        return KvOps(
            clear=lambda: lc.llama_memory_clear(mem, False),  # metadata only (zeroing the buffers costs ~40 ms)
            seq_cp=lambda src, dst, p0, p1: lc.llama_memory_seq_cp(mem, src, dst, p0, p1),
            seq_rm=lambda seq, p0, p1: lc.llama_memory_seq_rm(mem, seq, p0, p1),
            seq_pos_max=lambda seq: lc.llama_memory_seq_pos_max(mem, seq),
        )
    for prefix in ("llama_kv_self_", "llama_kv_cache_"):  # older llama-cpp-python releases
        if hasattr(lc, prefix + "seq_cp"):
            clear, cp, rm, pmax = (getattr(lc, prefix + name) for name in ("clear", "seq_cp", "seq_rm", "seq_pos_max"))
            return KvOps(
                clear=lambda: clear(ctx),
                seq_cp=lambda src, dst, p0, p1: cp(ctx, src, dst, p0, p1),
                seq_rm=lambda seq, p0, p1: rm(ctx, seq, p0, p1),
                seq_pos_max=lambda seq: pmax(ctx, seq),
            )
    raise TtevalError("this llama-cpp-python has no KV-cache sequence API; upgrade llama-cpp-python")


class LlamaBatch:
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


class Vocab:
    """A loaded model's vocabulary: tokenizing, token bytes and names (cached), end-of-generation flags, chat template."""

    def __init__(self, lc: Any, model: Any, model_name: str):
        self._lc = lc
        self.model_name = model_name
        self._vocab_ptr = lc.llama_model_get_vocab(model)
        self.n_vocab = int(lc.llama_vocab_n_tokens(self._vocab_ptr))
        template = lc.llama_model_chat_template(model, None)
        self._chat_template = template.decode("utf-8") if template else None
        self._add_bos = bool(lc.llama_vocab_get_add_bos(self._vocab_ptr))
        self._bos_text = self.token_text(lc.llama_vocab_bos(self._vocab_ptr))
        self._eos_text = self.token_text(lc.llama_vocab_eos(self._vocab_ptr))
        self.eog = np.array([bool(lc.llama_vocab_is_eog(self._vocab_ptr, t)) for t in range(self.n_vocab)])
        self._pieces: dict[int, bytes] = {}
        self._names: dict[int, str] = {}
        self._formatter: Any = None

    def token_text(self, tok: int) -> str:
        """A token's text as the vocabulary stores it ('' for a negative id)."""
        if tok < 0:
            return ""
        return self._lc.llama_vocab_get_text(self._vocab_ptr, tok).decode("utf-8", "replace")

    def piece(self, tok: int, special: bool = False) -> bytes:
        """The bytes a token stands for (control tokens render as '' unless `special`)."""
        key = tok if not special else -1 - tok
        piece = self._pieces.get(key)
        if piece is None:
            buf = ctypes.create_string_buffer(64)
            n = self._lc.llama_token_to_piece(self._vocab_ptr, tok, buf, 64, 0, special)
            if n < 0:
                buf = ctypes.create_string_buffer(-n)
                n = self._lc.llama_token_to_piece(self._vocab_ptr, tok, buf, -n, 0, special)
            piece = self._pieces[key] = buf.raw[:n]
        return piece

    def token_name(self, tok: int) -> str:
        """A token as a string for `tokens` / `top_logprobs`: its text, undecodable partial UTF-8 as \\x escapes."""
        name = self._names.get(tok)
        if name is None:
            name = self._names[tok] = self.piece(tok, special=True).decode("utf-8", "backslashreplace")
        return name

    def tokenize(self, text: str) -> list[int]:
        """Tokenize an already templated prompt, parsing special tokens; BOS added only if the model wants one."""
        data = text.encode("utf-8", "surrogatepass")
        add_special = self._add_bos and not (self._bos_text and text.startswith(self._bos_text))
        cap = len(data) + 8
        buf = (self._lc.llama_token * cap)()
        n = self._lc.llama_tokenize(self._vocab_ptr, data, len(data), buf, cap, add_special, True)
        if n < 0:
            cap = -n
            buf = (self._lc.llama_token * cap)()
            n = self._lc.llama_tokenize(self._vocab_ptr, data, len(data), buf, cap, add_special, True)
        if n < 0:
            raise TtevalError("llama.cpp could not tokenize the prompt")
        return list(buf[:n])

    def apply_chat_template(self, messages: Sequence[tuple[str, str]]) -> str:
        """Render chat messages with the GGUF's own template (tokenizer.chat_template), generation prompt appended."""
        if self._formatter is None:
            if not self._chat_template:
                raise TtevalError(f"{self.model_name} has no chat template in its GGUF; send plain prompts instead")
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
            raise TtevalError(f"the chat template of {self.model_name} rejected the messages: {exc}") from None


_BACKEND_READY: list[bool] = []
LOG_TAIL: deque[str] = deque(maxlen=8)  # llama.cpp's last log lines, quoted when a call fails
_LOG_CALLBACK: list[Any] = []  # the ctypes callback must outlive every call into llama.cpp


def set_log(lc: Any, verbose: bool) -> None:
    """Silence llama.cpp's log (kept in a short buffer for error messages) unless verbose.

    llama-cpp-python's own filter maps this llama.cpp's log levels wrongly (warnings print as errors), so a
    no-op-ish callback is installed instead; verbose=True restores llama-cpp-python's printer.
    """
    if verbose:
        from llama_cpp import _logger

        _logger.set_verbose(True)
        lc.llama_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))
    else:
        lc.llama_log_set(_quiet_log_callback(lc), ctypes.c_void_p(0))


def _quiet_log_callback(lc: Any) -> Any:
    """A llama.cpp log callback that prints nothing and keeps the last few lines."""
    if not _LOG_CALLBACK:

        def keep(level: int, text: bytes, user_data: Any) -> None:
            line = (text or b"").decode("utf-8", "replace").strip()
            if line:
                LOG_TAIL.append(line)

        _LOG_CALLBACK.append(lc.llama_log_callback(keep))
    return _LOG_CALLBACK[0]


def log_hint() -> str:
    """The last llama.cpp log line, as a suffix for an error message ('' when there is none)."""
    return f" (llama.cpp: {LOG_TAIL[-1]})" if LOG_TAIL else ""


def init_backend(lc: Any) -> None:
    """llama_backend_init, once per process."""
    if not _BACKEND_READY:
        lc.llama_backend_init()
        _BACKEND_READY.append(True)
