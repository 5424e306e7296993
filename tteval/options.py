"""The run options of `tteval run` and `tteval sweep`, defined once: flags, type, default, help, help panel and
the RunConfig field each sets. Both commands' typer parameters are built from this table (`with_options`), so a
new option reaches both; `to_config` turns the parsed values into a RunConfig."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Optional

import typer

from tteval.backends.registry import BACKENDS
from tteval.config import FLAT, RunConfig
from tteval.errors import TtevalError
from tteval.strategies.registry import STRATEGIES
from tteval.task_data import DATA_SOURCES
from tteval.tasks import PROMPT_FORMATS
from tteval.verifiers.genrm import MODES as GENRM_MODES
from tteval.verifiers.prm import PRM_AGGREGATIONS
from tteval.verifiers.registry import VERIFIERS

TASK, SAMPLING, BACKEND, STRATEGY, VERIFIER, GRADING, PF, OUTPUT = (
    "Task", "Sampling", "Backend", "Strategy", "Verifier", "Grading", "Particle filtering", "Output",
)  # fmt: skip


def choice(name: str, values: Any) -> type[Enum]:
    """A str Enum of an option's allowed values, so `--help` lists them and click refuses others in one line."""
    return Enum(name, {v: v for v in values}, type=str)  # type: ignore[return-value]


def _value(x: Any) -> Any:
    return x.value if isinstance(x, Enum) else x


def _limit(text: str | None) -> Any:
    from tteval.tasks import parse_limit

    return parse_limit(text)


def _kv(flag: str) -> Callable[[str | None], Any]:
    def parse(text: str | None) -> Any:
        from tteval.passthrough import parse_kv

        return parse_kv(text, flag)

    return parse


def _path_str(p: Path | None) -> str | None:
    return str(p) if p is not None else None


@dataclass(frozen=True)
class Option:
    """One command-line option: `key` is its RunConfig flat name (config.FLAT says which section holds it)."""

    key: str
    flags: tuple[str, ...]
    type: Any
    default: Any
    help: str
    panel: str
    convert: Callable[[Any], Any] = _value  # the parsed value -> the config's
    metavar: str | None = None
    old_flags: tuple[str, ...] = ()  # former spellings: still accepted, not shown in --help

    @property
    def old_name(self) -> str:
        return f"{self.key}__old"

    @property
    def section(self) -> str:
        return FLAT[self.key][0] or "task"

    def parameter(self, name: str | None = None, **change: Any) -> inspect.Parameter:
        """The typer parameter of this option (`change` overrides flags, type, default, help or panel)."""
        o = {**self.__dict__, **change}
        info = typer.Option(o["default"], *o["flags"], help=o["help"], rich_help_panel=o["panel"], metavar=o["metavar"])
        return inspect.Parameter(name or self.key, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=o["type"])

    def parameters(self) -> list[inspect.Parameter]:
        """This option's typer parameter, then a hidden one for its former spellings (`old_flags`), if any."""
        if not self.old_flags:
            return [self.parameter()]
        old = typer.Option(None, *self.old_flags, hidden=True)
        return [self.parameter(), inspect.Parameter(self.old_name, inspect.Parameter.KEYWORD_ONLY, default=old,
                                                    annotation=Optional[self.type])]  # fmt: skip

    def value(self, values: dict[str, Any]) -> Any:
        """The parsed value of this option, given by its flag or by a former one (refused in one line if both
        are given with different values)."""
        return given_once(values[self.key], values.get(self.old_name), self.default, self.flags[0], self.old_flags)


def given_once(value: Any, old: Any, default: Any, flag: str, old_flags: tuple[str, ...]) -> Any:
    """An option's value from its flag (`value`) or a former spelling (`old`, None when not given)."""
    if old is None:
        return value
    if value != default and value != old:
        raise TtevalError(f"{flag} and {old_flags[0]} (its former name) give different values: give {flag} only")
    return old




def _backend(name: Any) -> str:
    """--backend: a built-in backend's name or a `module:factory` plug-in (tteval/backends/plugin.py)."""
    if name in BACKENDS or ":" in str(name):
        return str(name)
    raise TtevalError(f"--backend: {name!r} is not one of {', '.join(repr(b) for b in BACKENDS)} (or MODULE:FACTORY)")


StrategyChoice = choice("StrategyChoice", STRATEGIES)
VerifierChoice = choice("VerifierChoice", VERIFIERS)
DataSourceChoice = choice("DataSourceChoice", DATA_SOURCES)
PromptFormatChoice = choice("PromptFormatChoice", PROMPT_FORMATS)
GenRMScoreChoice = choice("GenRMScoreChoice", GENRM_MODES)
PRMAggregationChoice = choice("PRMAggregationChoice", PRM_AGGREGATIONS)

# the grid axes: one value in `run`, repeatable in `sweep` (GRID_AXES); budgets replace -n in a sweep
TASK_OPT = Option("task", ("--task", "--tasks", "-t"), str, "gsm8k",
                  "Task name(s) (see `tteval tasks`) or path(s) to a task YAML; comma-separated for several tasks "
                  "(one run folder per task, on one loaded model).", TASK, convert=lambda x: x)  # fmt: skip
MODEL_OPT = Option("model", ("--model", "-m"), str, "smollm2",
                   "Model: 'smollm2' (the embedded CPU default GGUF), a local .gguf path, or a hub id / served model name.",
                   TASK)  # fmt: skip
N_OPT = Option("n", ("-n", "--num-samples"), int, 4, "Candidates sampled per problem (the pool size N).", SAMPLING)
TEMPERATURE_OPT = Option("temperature", ("--temperature",), float, 0.7, "Sampling temperature (0 = greedy).", SAMPLING)
STRATEGY_OPT = Option(
    "strategy", ("--strategy", "-s"), StrategyChoice, "sample",
    "sample: an i.i.d. pool of N, scored by every selector at every k <= N; "
    "particle-filter: N particles steered step by step by a process reward (the generative verifier on CPU); "
    "pass-until: sample each problem in rounds until --until-successes correct answers or N samples, for "
    "unbiased estimates of tiny pass rates.", STRATEGY,
)  # fmt: skip

# every other option of a run, shared by `run` and `sweep`, in --help order
# also `tteval score`'s (cli.score reads it through `Option.value`)
GRADER_PROCESSES_OPT = Option("workers", ("--grader-processes",), int, 2,
                              "Parallel processes of the oracle graders (math-verify checks, code sandboxes).",
                              GRADING, old_flags=("--workers",))  # fmt: skip

SHARED: tuple[Option, ...] = (
    Option("limit", ("--limit", "-l"), Optional[str], None,
           "Only the first N problems, or a fraction in (0, 1) of the task (0.5 = the first half); default: all.",
           TASK, convert=_limit, metavar="N|FRACTION"),
    Option("tasks_dir", ("--tasks-dir",), Optional[Path], None, "Extra folder of task YAML files.", TASK,
           convert=_path_str),
    Option("data_source", ("--data-source",), DataSourceChoice, "auto", "auto (vendored file, else hub), local, or hub.",
           TASK),
    Option("prompt_format", ("--prompt-format",), PromptFormatChoice, "chat",
           "chat: the task's messages through the model's chat template; raw: their text as one plain prompt "
           "(base models), on every backend.", TASK),
    Option("num_fewshot", ("--num-fewshot",), int, 0, "Worked examples before each question (the task YAML's fewshot "
           "file): chat turns, or text blocks in raw format.", TASK),
    Option("max_tokens", ("--max-tokens",), Optional[int], None, "Maximum generated tokens per candidate (default "
           "256; a particle: --pf-max-steps x --pf-step-tokens, the authors').", SAMPLING),
    Option("top_p", ("--top-p",), float, 1.0, "Nucleus sampling mass.", SAMPLING),
    Option("seed", ("--seed",), int, 0, "Run seed; each problem's samples depend only on it and the problem id.",
           SAMPLING),
    Option("gen_kwargs", ("--gen-kwargs",), Optional[str], None,
           "More sampling parameters of the candidates: vllm.SamplingParams fields (vllm), or the API's (openai: "
           "top_k, min_p, presence_penalty, ...), e.g. top_k=20,min_p=0.05.", SAMPLING,
           convert=_kv("--gen-kwargs"), metavar="KEY=VALUE,..."),
    Option("backend", ("--backend", "-b"), str, "llamacpp",
           "Sampling backend: llamacpp (CPU), vllm (GPU), openai (HTTP), or a plug-in: a factory taking the run config"
           " and returning a Backend (tteval/backends/plugin.py).", BACKEND, convert=_backend,
           metavar="<" + "|".join(BACKENDS) + "|MODULE:FACTORY>"),
    Option("model_args", ("--model-args",), Optional[str], None,
           "Engine arguments: vllm.EngineArgs fields (vllm: dtype=bfloat16,max_model_len=4096,"
           "gpu_memory_utilization=0.8,revision=...,trust_remote_code=true), or n_ctx, n_threads, max_parallel "
           "(llamacpp).", BACKEND, convert=_kv("--model-args"), metavar="KEY=VALUE,..."),
    Option("base_url", ("--base-url",), Optional[str], None, "OpenAI-compatible server URL (openai backend).", BACKEND),
    Option("chat_template", ("--chat-template",), Optional[str], None,
           "openai backend: render chats here with this Jinja template file (for raw-prompt strategies).", BACKEND),
    Option("max_concurrency", ("--max-concurrency",), int, 16, "openai backend: HTTP requests in flight.", BACKEND),
    Option("request_timeout", ("--timeout",), float, 600.0, "openai backend: seconds allowed per HTTP request.",
           BACKEND),
    Option("batch_problems", ("--batch-problems",), Optional[int], None, "Problems per backend call (checkpoint unit).",
           BACKEND),
    Option("ray", ("--ray",), Optional[str], None,
           "Shard problems over Ray actors: 'local' starts Ray here; or a cluster address (ray://host:10001).",
           BACKEND),
    Option("ray_actors", ("--ray-actors",), int, 2, "Ray actors, each holding one loaded backend (one per GPU).",
           BACKEND),
    Option("tensor_parallel", ("--tensor-parallel",), int, 1,
           "vLLM tensor-parallel GPUs per engine (and per Ray actor).", BACKEND),
    Option("cache", ("--cache/--no-cache",), bool, True,
           "Reuse identical seeded requests from the SQLite generation cache ($TTEVAL_CACHE_DIR).", BACKEND),
    Option("until_successes", ("--until-successes",), int, 2,
           "PassUntil: stop a problem at this many correct samples (>= 2 for the unbiased (r-1)/(K-1)).", STRATEGY),
    Option("round_size", ("--round-size",), Optional[int], None,
           "PassUntil: samples drawn per problem per round (default: min(N, 16)).", STRATEGY),
    Option("verifier", ("--verifier",), VerifierChoice, "none",
           "Model-based verifier: none | genrm (a generative verifier on the policy model) | prm (a process reward "
           "model on vLLM's pooling API, GPU). Scores pool candidates (bon@k) and steers particle filtering.",
           VERIFIER),
    Option("prm_model", ("--prm-model",), Optional[str], None,
           "--verifier prm: the PRM, e.g. Qwen/Qwen2.5-Math-PRM-7B.", VERIFIER),
    Option("prm_aggregation", ("--prm-aggregation",), Optional[PRMAggregationChoice], None,
           "--verifier prm: step aggregation (model: the whole answer as one step); default model for particle "
           "filtering, last otherwise.", VERIFIER),
    Option("verifications", ("--verifications", "-V"), int, 1, "Verification chains per candidate (GenRM's V).",
           VERIFIER),
    Option("verifier_max_tokens", ("--verifier-max-tokens",), int, 128, "Tokens per verification chain.", VERIFIER),
    Option("genrm_score", ("--genrm-score",), Optional[GenRMScoreChoice], None,
           "GenRM chain score: hybrid (default with --verifier genrm: the authors' P(Yes) at the "
           "sampled verdict token, else the written verdict) | logprob | binary (the written Yes/No) | normalized "
           "(tteval 0.1: a forced verdict, p(Yes)/(p(Yes)+p(No)); the default for particle filtering's process "
           "reward).", VERIFIER),
    GRADER_PROCESSES_OPT,
    Option("pf_step_tokens", ("--pf-step-tokens",), int, 128, "Max tokens per step.", PF),
    Option("pf_max_steps", ("--pf-max-steps",), int, 40, "Max steps per particle.", PF),
    Option("pf_softmax_temp", ("--pf-softmax-temp",), float, 1.0, "Resampling temperature.", PF),
    Option("pf_iterations", ("--pf-iterations",), int, 1,
           "Particle Gibbs iterations T (1 = plain particle filtering); budget N x T generations.", PF),
)  # fmt: skip
OUT_OPT = Option("out", ("--out", "-o"), Path, Path("results"), "Folder that receives <run_id>/.", OUTPUT,
                 convert=str)  # fmt: skip



def _with_axes(shared: tuple[Option, ...], after: dict[str, Option]) -> tuple[Option, ...]:
    """`shared` with each axis option placed after the shared option named by its key in `after`."""
    out: list[Option] = []
    for o in shared:
        out += [o, *([after[o.key]] if o.key in after else [])]
    return tuple(out)


RUN_OPTIONS: tuple[Option, ...] = (TASK_OPT, MODEL_OPT, *_with_axes(SHARED, {"prompt_format": N_OPT, "max_tokens": TEMPERATURE_OPT,
                                                                            "cache": STRATEGY_OPT}), OUT_OPT)  # fmt: skip
GRID = "Grid"


def run_parameters() -> list[inspect.Parameter]:
    """`tteval run`'s parameters: every run option, then --resume."""
    resume = typer.Option(None, "--resume", rich_help_panel=OUTPUT, help="Continue the run in this folder with its "
                          "recorded config (other options but --no-cache are ignored).")  # fmt: skip
    return [p for o in RUN_OPTIONS for p in o.parameters()] + [
        inspect.Parameter("resume", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[Path], default=resume)]


def sweep_parameters() -> list[inspect.Parameter]:
    """`tteval sweep`'s run options: the grid axes (repeatable), the run folders' --runs-dir, and every shared one."""
    axes = [
        TASK_OPT.parameter(flags=("--task", "-t"), type=Optional[list[str]], default=None, panel=GRID,
                           help="Grid: run this task (repeatable). Without it, only RUN_DIRS are gathered."),
        MODEL_OPT.parameter(type=Optional[list[str]], default=None, panel=GRID,
                            help="Grid: model (repeatable; default smollm2)."),
        STRATEGY_OPT.parameter(type=Optional[list[str]], default=None, panel=GRID,
                               help="Grid: sample (one pool at the largest budget, every selector at every k) and/or "
                               "particle-filter (one run per budget); repeatable; default sample."),
        Option("budgets", ("--budgets", "-k"), str, "1,2,4,8",
               "Grid: budgets (samples or particles), comma-separated.", GRID).parameter(),
        TEMPERATURE_OPT.parameter(type=Optional[list[float]], default=None, panel=GRID,
                                  help="Grid: sampling temperature (repeatable; default 0.7)."),
        OUT_OPT.parameter("runs_dir", flags=("--runs-dir",),
                          help="Grid: folder that receives the runs (re-running resumes them)."),
    ]  # fmt: skip
    return axes + [p for o in SHARED for p in o.parameters()]


def with_options(params: list[inspect.Parameter]) -> Callable[[Callable], Callable]:
    """Give a `def command(ctx, ..., **values)` the typer parameters `params` after its own."""

    def decorate(func: Callable) -> Callable:
        sig = inspect.signature(func)
        own = [p for p in sig.parameters.values() if p.kind != inspect.Parameter.VAR_KEYWORD]
        func.__signature__ = sig.replace(parameters=own + params)  # type: ignore[attr-defined]
        return func

    return decorate


def to_config(values: dict[str, Any], **fixed: Any) -> RunConfig:
    """The RunConfig of parsed option values (table options only; `fixed`: flat values set by the command)."""
    flat = {o.key: o.convert(o.value(values)) for o in RUN_OPTIONS if o.key in values}
    return RunConfig.of(**{**flat, **fixed})


def task_list(text: str) -> list[str]:
    """`--tasks a,b` -> ["a", "b"] (as lm-eval's --tasks); duplicates and empty items are refused in one line."""
    names = [t.strip() for t in text.split(",")]
    if not all(names):
        raise TtevalError(f"--task must be task names separated by commas, got '{text}'")
    dup = sorted({t for t in names if names.count(t) > 1})
    if dup:
        raise TtevalError(f"--task names {', '.join(dup)} more than once")
    return names


def given_flags(ctx: Any, exclude: set[str]) -> list[str]:
    """The options the user gave on the command line (or by environment), by their first flag, in declared order."""
    given = []
    for param in ctx.command.params:
        if param.name in exclude or not getattr(param, "opts", None):
            continue
        source = ctx.get_parameter_source(param.name)
        if source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT"):
            given.append(param.opts[0])
    return given
