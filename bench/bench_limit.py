"""The limit: llama.cpp's own `llama-batched-bench` against tteval's llama.cpp backend, side by side.

`llama-batched-bench` is built from the vendored llama.cpp source of the installed llama-cpp-python (its sdist, from
the package index) with the Makefile's flags ($CMAKE_ARGS, as `make bench` exports it, else the Makefile's
LLAMA_CMAKE_ARGS), shared libraries and Release, as llama-cpp-python's own build; cached under bench/out/.
Both run SmolLM2-135M with the same threads, ubatch (48), per-sequence KV streams (`-no-kvu`), a GSM8K prompt (~114 tokens)
shared by 1, 8 and 16 parallel sequences (`-pps`: decoded once), and 128 generated tokens.
llama.cpp's figure is S_TG (text-generation tokens/s: decode only, greedy argmax in C, no logprobs); tteval's is its
generated tokens / (call wall time - prompt decoding), sampling in numpy, logprobs and bookkeeping included. A
tteval sample can stop at EOS before 128 tokens, so its batch thins out at the end: `mean_live` says how many
sequences a decode step held on average. Rounds interleave the two, best of rounds kept; load average recorded.
Writes bench/results/limit.json; with `--threads N`, limit-threads-N.json (1 thread: the particle filter bench's).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import time
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).parent
OUT = HERE / "out"
RESULT = HERE / "results" / "limit.json"
PARALLEL = (1, 8, 16)
GEN, UBATCH, SEED = 128, 48, 0
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "2"))


def makefile_cmake_args() -> list[str]:
    """$CMAKE_ARGS, else the Makefile's LLAMA_CMAKE_ARGS (the flags the installed llama-cpp-python was built with)."""
    if os.environ.get("CMAKE_ARGS"):
        return shlex.split(os.environ["CMAKE_ARGS"])
    m = re.search(r"^LLAMA_CMAKE_ARGS \?= (.*)$", (HERE.parent / "Makefile").read_text(), re.M)
    return shlex.split(m.group(1)) if m else []


def build() -> Path:
    """llama-batched-bench from the installed llama-cpp-python's vendored llama.cpp (cached)."""
    version = metadata.version("llama_cpp_python")
    flags = makefile_cmake_args()
    root = OUT / f"llama.cpp-{version}"
    exe = root / "build" / "bin" / "llama-batched-bench"
    stamp = root / "build" / "flags.txt"
    if exe.is_file() and stamp.is_file() and stamp.read_text() == shlex.join(flags):
        return exe
    sdist = OUT / f"llama_cpp_python-{version}.tar.gz"
    if not sdist.is_file():
        subprocess.run([sys.executable, "-m", "pip", "download", f"llama-cpp-python=={version}", "--no-deps",
                        "--no-binary", ":all:", "-d", str(OUT)], check=True)  # fmt: skip
    src = root / "src"
    if not (src / "CMakeLists.txt").is_file():
        shutil.rmtree(root, ignore_errors=True)
        prefix = f"llama_cpp_python-{version}/vendor/llama.cpp/"
        with tarfile.open(sdist) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(prefix)]
            for m in members:
                m.name = m.name[len(prefix):]
            tar.extractall(src, members=[m for m in members if m.name], filter="data")
    cmake = ["cmake", "-S", str(src), "-B", str(root / "build"), "-DCMAKE_BUILD_TYPE=Release", "-DBUILD_SHARED_LIBS=ON",
             "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=OFF",
             "-DLLAMA_BUILD_TOOLS=ON", *flags]  # fmt: skip
    subprocess.run(cmake, check=True, stdout=subprocess.DEVNULL)
    jobs = str(len(os.sched_getaffinity(0)))
    subprocess.run(["cmake", "--build", str(root / "build"), "--target", "llama-batched-bench", "-j", jobs],
                   check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    stamp.write_text(shlex.join(flags))
    return exe


def gsm8k_prompt():
    """The first GSM8K problem as tteval sends it (chat-templated)."""
    from tteval.tasks import load_problems, load_task

    task = load_task("gsm8k")
    return task.messages(load_problems(task, 1)[0])


def run_limit(exe: Path, model: str, pp: int, threads: int) -> dict[int, dict]:
    """llama-batched-bench at every parallel count: {npl: its jsonl row}."""
    ctx = max(PARALLEL) * (pp + GEN) + 256
    cmd = [str(exe), "-m", model, "-c", str(ctx), "-b", "512", "-ub", str(UBATCH), "-npp", str(pp), "-ntg", str(GEN),
           "-npl", ",".join(map(str, PARALLEL)), "-pps", "-no-kvu", "-t", str(threads), "-tb", str(threads),
           "--output-format", "jsonl"]  # fmt: skip
    r = subprocess.run(cmd, check=True, capture_output=True, text=True)
    rows = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    return {int(row["pl"]): row for row in rows}


def run_tteval(backend, messages, n: int) -> dict:
    from tteval.backends.base import Request

    backend.clear_cache()  # an empty cache, as llama-batched-bench starts with
    steps0, pre0 = backend.usage.extra.get("decode_steps", 0), backend.prompt_decode_s
    req = Request(messages=messages, n=n, temperature=0.7, max_tokens=GEN, seed=SEED)
    t0 = time.perf_counter()
    (out,) = backend.generate([req])
    wall = time.perf_counter() - t0
    prefill = backend.prompt_decode_s - pre0
    tokens = sum(c.num_tokens for c in out)
    steps = backend.usage.extra["decode_steps"] - steps0
    return {"tokens": tokens, "wall_s": round(wall, 3), "prefill_s": round(prefill, 3),
            "tg_tokens_per_s": round(tokens / (wall - prefill), 1), "mean_live": round(tokens / max(steps, 1), 2)}


def main() -> None:
    from tteval.backends.llamacpp import LlamaCppBackend
    from tteval.backends.model_files import resolve_model_path
    from tteval.backends.threads import default_threads

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for both (default: tteval's, $TTEVAL_LLAMA_THREADS or one per CPU); writes "
                             "limit-threads-N.json")  # fmt: skip
    args = parser.parse_args()
    exe = build()
    model = resolve_model_path("smollm2")
    threads = args.threads or int(os.environ.get("TTEVAL_LLAMA_THREADS") or default_threads())
    out = RESULT if args.threads is None else RESULT.with_name(f"limit-threads-{args.threads}.json")
    backend = LlamaCppBackend(n_threads=threads, max_parallel=max(PARALLEL))
    messages = gsm8k_prompt()
    pp = len(backend.tokenize(backend.apply_chat_template(messages)))
    best: dict[str, dict[int, dict]] = {"llama.cpp": {}, "tteval": {}}
    loads = [os.getloadavg()[0]]
    for _ in range(ROUNDS):
        for n, row in run_limit(exe, model, pp, threads).items():
            cur = {"tg_tokens_per_s": round(row["speed_tg"], 1), "pp_tokens_per_s": round(row["speed_pp"], 1),
                   "t_tg_s": round(row["t_tg"], 3)}  # fmt: skip
            if cur["tg_tokens_per_s"] > best["llama.cpp"].get(n, {}).get("tg_tokens_per_s", 0):
                best["llama.cpp"][n] = cur
        loads.append(os.getloadavg()[0])
        for n in PARALLEL:
            cur = run_tteval(backend, messages, n)
            if cur["tg_tokens_per_s"] > best["tteval"].get(n, {}).get("tg_tokens_per_s", 0):
                best["tteval"][n] = cur
        loads.append(os.getloadavg()[0])
        print(json.dumps(best), flush=True)
    backend.close()
    ratios = {f"n={n}": round(best["tteval"][n]["tg_tokens_per_s"] / best["llama.cpp"][n]["tg_tokens_per_s"], 3)
              for n in PARALLEL}  # fmt: skip
    result = {
        "setup": {"prompt_tokens": pp, "generated": GEN, "parallel": list(PARALLEL), "threads": threads,
                  "ubatch": UBATCH, "rounds": ROUNDS, "cmake_args": shlex.join(makefile_cmake_args()),
                  "llama_cpp_python": metadata.version("llama_cpp_python")},  # fmt: skip
        "machine": {"cpus": len(os.sched_getaffinity(0)), "loadavg_1m_per_round": [round(x, 2) for x in loads]},
        "llama.cpp": [{"n": n, **best["llama.cpp"][n]} for n in PARALLEL],
        "tteval": [{"n": n, **best["tteval"][n]} for n in PARALLEL],
        "tteval_vs_llama_cpp_tg": ratios,
        "target": "tteval >= 0.9 x llama.cpp's S_TG at n = 8 and 16",
        "target_met": all(ratios[f"n={n}"] >= 0.9 for n in (8, 16)),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(ratios))


if __name__ == "__main__":
    main()
