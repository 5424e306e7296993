"""The GPU smoke test of the vLLM path (`scripts/gpu-smoke.sh`): tteval's vLLM backend and PRM on a real GPU.

Models are made here, offline: the embedded SmolLM2-135M GGUF turned into a Hugging Face folder (transformers +
gguf), and a 2-layer Qwen2ForProcessRewardModel of random weights that vLLM makes itself (load_format="dummy"),
with SmolLM2's tokenizer plus the step tag `<extra_0>`. Each check prints PASS or FAIL with its figures; the
summary goes to <work>/gpu_smoke.json; the exit status is the number of failed checks (0: all passed).

Importing this module does nothing; `prepare` (the models) runs on a CPU, the checks need a GPU with vLLM.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

STEP_TAG = "<extra_0>"
FAST = {"enforce_eager": True}  # no CUDA-graph capture or compilation: engines start in seconds
RESULTS: list[dict[str, Any]] = []


def check(title: str) -> Callable[[Callable[..., dict[str, Any]]], Callable[..., dict[str, Any] | None]]:
    """Run a check, record PASS (with the figures it returns) or FAIL (with the first line of why).

    `title` may name the check's first argument as {0} (one check function, several runs)."""

    def wrap(fn: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any] | None]:
        def run(*args: Any, **kwargs: Any) -> dict[str, Any] | None:
            name = title.format(*args) if "{0}" in title else title
            t0 = time.monotonic()
            try:
                figures = fn(*args, **kwargs) or {}
                ok, why = True, ""
            except Exception as exc:  # noqa: BLE001 - a failed check is reported and the others still run
                text = str(exc).strip()
                figures, ok, why = {}, False, f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"
                traceback.print_exc(file=sys.stderr)
            RESULTS.append({"check": name, "ok": ok, "why": why, "seconds": round(time.monotonic() - t0, 1), **figures})
            print(f"{'PASS' if ok else 'FAIL'}  {name}  {why or json.dumps(figures, default=str)}", flush=True)
            return figures if ok else None

        return run

    return wrap


# ------------------------------------------------------------------------------------------ models (CPU)
def hf_policy(work: Path) -> Path:
    """The embedded SmolLM2-135M-Instruct GGUF as a Hugging Face folder vLLM loads (weights dequantized)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tteval.backends.llamacpp import resolve_model_path

    out = work / "smollm2-hf"
    if (out / "config.json").is_file():
        return out
    gguf = Path(resolve_model_path("smollm2"))
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if not getattr(tokenizer, "chat_template", None):
        raise RuntimeError(f"{gguf.name} carries no chat template")
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)  # dequantized on load
    config = loaded.config
    if hasattr(config, "quantization_config"):  # the GGUF quantizer cannot save: copy the weights into a plain model
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def dummy_prm(work: Path, policy: Path) -> Path:
    """A 2-layer Qwen2ForProcessRewardModel config (no weights: vLLM's load_format="dummy" makes them) with the
    policy's tokenizer and chat template plus the step tag as one added token."""
    from transformers import AutoTokenizer, Qwen2Config

    out = work / "prm-dummy"
    if (out / "config.json").is_file():
        return out
    tokenizer = AutoTokenizer.from_pretrained(policy)
    tokenizer.add_special_tokens({"additional_special_tokens": [STEP_TAG]})
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         num_labels=2, torch_dtype="bfloat16", tie_word_embeddings=False)  # fmt: skip
    config.architectures = ["Qwen2ForProcessRewardModel"]
    config.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def prepare(work: Path) -> tuple[Path, Path]:
    """Both model folders under `work` (made once, reused by later runs)."""
    work.mkdir(parents=True, exist_ok=True)
    policy = hf_policy(work)
    return policy, dummy_prm(work, policy)


# ------------------------------------------------------------------------------------------ checks (GPU)
def _requests():
    from tteval.backends.base import Request

    chat = (("user", "What is 2 + 3? Answer briefly."),)
    return Request, chat


@check("sample counts per request (n samples each, greedy n repeated)")
def check_counts(backend) -> dict[str, Any]:
    Request, chat = _requests()
    out = backend.generate([Request(messages=chat, n=4, temperature=0.8, max_tokens=24, seed=1),
                            Request(prompt="Once upon a time", n=3, temperature=1.0, max_tokens=16, seed=2),
                            Request(messages=chat, n=2, temperature=0.0, max_tokens=16)])  # fmt: skip
    counts = [len(o) for o in out]
    assert counts == [4, 3, 2], counts
    assert len({c.text for c in out[0]}) > 1, "four sampled answers are all the same"
    return {"counts": counts}


@check("per-token logprobs sum to the sequence logprob (vLLM's cumulative_logprob)")
def check_logprobs(backend) -> dict[str, Any]:
    import vllm

    Request, chat = _requests()
    prompt = backend.request_prompt(Request(messages=chat))
    outs = backend.engine.generate([prompt], [vllm.SamplingParams(n=3, temperature=0.9, max_tokens=24, seed=3, logprobs=0)],
                                   use_tqdm=False)  # fmt: skip
    worst = 0.0
    for c in outs[0].outputs:
        chosen = sum(pos[t].logprob for t, pos in zip(c.token_ids, c.logprobs, strict=True))
        worst = max(worst, abs(chosen - c.cumulative_logprob))
    assert worst < 1e-2 * max(1.0, abs(outs[0].outputs[0].cumulative_logprob)), worst
    (ours,) = backend.generate([Request(messages=chat, n=1, temperature=0.9, max_tokens=24, seed=3)])
    assert math.isclose(ours[0].logprob, sum(ours[0].token_logprobs), rel_tol=1e-9)
    return {"max_abs_diff": worst}


@check("greedy decoding picks the top-1 token at every position")
def check_greedy(backend) -> dict[str, Any]:
    Request, chat = _requests()
    ((c,),) = backend.generate([Request(messages=chat, n=1, temperature=0.0, max_tokens=32, top_logprobs=1)])
    for pos, (token, lp, top) in enumerate(zip(c.tokens, c.token_logprobs, c.top_logprobs, strict=True)):
        (best, best_lp), = top.items()
        assert token == best and math.isclose(lp, best_lp, abs_tol=1e-4), (pos, token, best)
    return {"positions": c.num_tokens}


@check("stop strings end a completion, which excludes them")
def check_stop(backend) -> dict[str, Any]:
    Request, _ = _requests()
    ((c,),) = backend.generate([Request(prompt="1, 2, 3, 4, 5, 6, 7,", n=1, temperature=0.0, max_tokens=32, stop=(",",))])
    assert c.finish_reason == "stop" and c.stop_reason == "," and "," not in c.text, (c.finish_reason, c.stop_reason, c.text)
    return {"text": c.text}


@check("chat prompts are the token ids of LLM.chat")
def check_chat_tokens(backend) -> dict[str, Any]:
    import vllm

    Request, chat = _requests()
    ours = backend.request_prompt(Request(messages=chat))["prompt_token_ids"]
    (theirs,) = backend.engine.chat([{"role": r, "content": c} for r, c in chat], vllm.SamplingParams(max_tokens=1),
                                    use_tqdm=False)  # fmt: skip
    assert ours == list(theirs.prompt_token_ids), (len(ours), len(theirs.prompt_token_ids))
    return {"tokens": len(ours)}


@check("an over-long prompt fails alone; the rest of the batch completes")
def check_long_prompt(backend) -> dict[str, Any]:
    Request, chat = _requests()
    limit = backend.max_model_len
    long = "one two three " * limit
    out = backend.generate([Request(messages=chat, n=2, max_tokens=8, seed=4), Request(prompt=long, n=3, max_tokens=8),
                            Request(prompt="Hello", n=1, max_tokens=8, seed=5)])  # fmt: skip
    assert [c.finish_reason for c in out[1]] == ["length_prompt"] * 3
    assert all(c.finish_reason in ("stop", "length") and c.num_tokens > 0 for c in out[0] + out[2])
    return {"max_model_len": limit, "long_prompt_tokens": out[1][0].prompt_tokens}


@check("prefix caching: n samples and repeated prompts are served from the cache")
def check_prefix_cache(backend) -> dict[str, Any]:
    Request, _ = _requests()
    prompt = "Here is a long shared preamble about arithmetic. " * 24
    before = dict(backend.usage.extra), backend.usage.prompt_tokens
    backend.generate([Request(prompt=prompt + "First:", n=4, temperature=0.8, max_tokens=8, seed=6)])
    first = backend.usage.extra["cached_prompt_tokens"] - before[0]["cached_prompt_tokens"]
    backend.generate([Request(prompt=prompt + "Second:", n=1, temperature=0.8, max_tokens=8, seed=7)])
    second = backend.usage.extra["cached_prompt_tokens"] - before[0]["cached_prompt_tokens"] - first
    read = backend.usage.prompt_tokens - before[1]
    assert second > 0, "a repeated prefix was not served from the prefix cache"
    return {"cached_tokens_n4_request": first, "cached_tokens_repeat": second, "prompt_tokens_read": read}


@check("PRM rewards: one per step, each in [0, 1]; an over-long item fails alone")
def check_prm(prm) -> dict[str, Any]:
    items = [("What is 2 + 3?", "First, 2 + 3.\n\nThat is 5.\n\nSo \\boxed{5}."), ("What is 1 + 1?", "2"),
             ("What is 1 + 1?", "\n\n".join(["step"] * 4000))]  # fmt: skip
    results = prm.score(items)
    assert [len(r.step_scores or []) for r in results[:2]] == [3, 1], [r.step_scores for r in results]
    assert all(0.0 <= p <= 1.0 for r in results[:2] for p in r.step_scores)
    assert results[2].failed == "length_prompt" and results[2].score == 0.0
    return {"steps": [r.step_scores for r in results[:2]]}


@check("close() shuts the engine down and its GPU memory comes back")
def check_release(closeable, before: int | None) -> dict[str, Any]:
    from tteval.backends.vllm_engine import GIB, gpu_memory_used

    line = closeable.close()
    after = gpu_memory_used()
    assert before is not None and after is not None, "NVML cannot measure GPU memory"
    assert after - before < GIB, line
    return {"log": line, "used_gib_before": round(before / GIB, 2), "used_gib_after": round(after / GIB, 2)}


@check("tteval run completes: {0}")
def check_run(name: str, work: Path, *args: str, env: dict[str, str]) -> dict[str, Any]:
    out = work / "runs" / name
    r = subprocess.run([sys.executable, "-m", "tteval.cli", "run", "--backend", "vllm", "--task", "gsm8k", "--limit", "2",
                        "--no-cache", "--out", str(out), *args], capture_output=True, text=True, timeout=300,
                       env={**os.environ, **env})  # fmt: skip
    assert r.returncode == 0, r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode
    (run,) = [d for d in out.iterdir() if d.is_dir()]
    meta = json.loads((run / "run.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    assert meta["status"] == "complete" and metrics["num_problems"] == 2
    return {"run": name, "curves": sorted(metrics["curves"]), "failed": metrics.get("failed"),
            "log": [line for line in r.stderr.splitlines() if "shut down" in line]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("gpu-smoke"), help="folder for the models, runs and report")
    parser.add_argument("--prepare-only", action="store_true", help="make the model folders (CPU) and stop")
    args = parser.parse_args(argv)
    policy, prm_dir = prepare(args.work)
    print(f"models: {policy} and {prm_dir}", flush=True)
    if args.prepare_only:
        return 0
    from tteval.backends.vllm import VLLMBackend
    from tteval.backends.vllm_engine import gpu_memory_used
    from tteval.verifiers.prm import VLLMPRMScorer

    before = gpu_memory_used()
    backend = VLLMBackend(str(policy), gpu_memory_utilization=0.3, max_model_len=512, seed=0, **FAST)
    for fn in (check_counts, check_logprobs, check_greedy, check_stop, check_chat_tokens, check_long_prompt,
               check_prefix_cache):  # fmt: skip
        fn(backend)
    check_release(backend, before)
    before = gpu_memory_used()
    prm = VLLMPRMScorer(str(prm_dir), "min", gpu_memory_utilization=0.2, max_model_len=1024, load_format="dummy", **FAST)
    check_prm(prm)
    check_release(prm, before)
    fast = {"TTEVAL_VLLM_ARGS": json.dumps({**FAST, "gpu_memory_utilization": 0.3}),
            "TTEVAL_VLLM_PRM_ARGS": json.dumps({**FAST, "load_format": "dummy", "gpu_memory_utilization": 0.2})}
    check_run("genrm", args.work, "--model", str(policy), "-n", "2", "--max-tokens", "64", "--verifier", "genrm",
              "--verifier-max-tokens", "32", env=fast)  # fmt: skip
    check_run("particle-filter", args.work, "--model", str(policy), "-n", "2", "--strategy", "particle-filter",
              "--pf-step-tokens", "32", "--pf-max-steps", "3", "--verifier", "prm", "--prm-model", str(prm_dir),
              env=fast)  # fmt: skip
    failed = [r["check"] for r in RESULTS if not r["ok"]]
    (args.work / "gpu_smoke.json").write_text(json.dumps({"results": RESULTS, "failed": failed}, indent=2, default=str))
    print(f"{len(RESULTS) - len(failed)}/{len(RESULTS)} checks passed; report: {args.work / 'gpu_smoke.json'}")
    return len(failed)


if __name__ == "__main__":
    sys.exit(main())
