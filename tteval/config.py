"""A run's configuration: what is evaluated (task, model, problems) and five sections (sampling, backend, strategy,
verifier, execution). Its identity (the parts that decide the samples) names the run folder, so re-running resumes.

Identity rules, explicit per section:
- `execution` never enters the identity (where results go, how many processes or actors: samples do not change);
  this is tteval 0.1's `_NON_IDENTITY`.
- Identity 2 (this version) hashes only the parts in use: the backend's own settings (`BackendSpec.identity`), the
  strategy's knobs (`Strategy.identity`) and the settings of the scorer in use, if any (`ScorerSpec.identity`).
  Fields added after identity 2 go into their section's `LATER` (left out at their default, so ids survive them).
- Identity 1 (run folders written before it) hashed the flat config with `LEGACY_LATER` left out at their default;
  a run folder whose run.json records identity 1 still resumes, under its old id (`matches`, `legacy_run_id`).
run.json keeps the flat config (`to_flat`), as every reader of run folders expects.
"""

from __future__ import annotations

import hashlib
import json
import re
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

from tteval.errors import TtevalError

IDENTITY_VERSION = 2
SECTIONS = ("sampling", "backend", "strategy", "verifier", "execution")


@dataclass
class SamplingConfig:
    """How each candidate is sampled."""

    n: int = 4
    max_tokens: int | None = None  # per candidate; None: 256, a particle pf_max_steps x pf_step_tokens (token_cap)
    temperature: float = 0.7
    top_p: float = 1.0
    seed: int = 0
    gen_kwargs: dict[str, Any] | None = None  # --gen-kwargs: extra sampling parameters of the policy's requests
    LATER: ClassVar[dict[str, Any]] = {"gen_kwargs": None}


@dataclass
class BackendConfig:
    """Which engine samples, and its settings (each backend hashes only its own: `BackendSpec.identity`)."""

    name: str = "llamacpp"
    base_url: str | None = None
    chat_template: str | None = None  # openai backend: render chats client-side with this Jinja template (file)
    tensor_parallel: int = 1
    model_args: dict[str, Any] | None = None  # --model-args: the engine constructor's extra arguments
    LATER: ClassVar[dict[str, Any]] = {"model_args": None, "chat_template": None}


@dataclass
class StrategyConfig:
    """The generation strategy (`tteval.strategies.registry`) and its knobs."""

    name: str = "sample"
    until_successes: int = 2
    round_size: int | None = None
    pf_step_tokens: int = 128
    pf_max_steps: int = 40
    pf_softmax_temp: float = 1.0
    pf_iterations: int = 1
    LATER: ClassVar[dict[str, Any]] = {}


@dataclass
class VerifierConfig:
    """The model-based verifier (`tteval.verifiers.registry`): GenRM chains or a PRM."""

    name: str = "none"
    verifications: int = 1
    verifier_max_tokens: int = 128
    genrm_score: str | None = None  # GenRM's chain score (verifiers/genrm.py MODES); None: see RunConfig.genrm_mode
    prm_model: str | None = None  # --verifier prm: the process reward model (vLLM pooling, GPU)
    prm_aggregation: str | None = None  # last | min | prod | mean | model; None: model for particle filtering, else last
    LATER: ClassVar[dict[str, Any]] = {}


@dataclass
class ExecutionConfig:
    """How the run is carried out: never part of the run id, since the samples do not depend on it."""

    out: str = "results"
    tasks_dir: str | None = None
    batch_problems: int | None = None
    workers: int = 2
    cache: bool = True
    ray: str | None = None  # None: local; "local": a Ray instance on this machine; else a cluster address
    ray_actors: int = 2
    max_concurrency: int = 16  # openai backend: requests in flight
    request_timeout: float = 600.0  # openai backend: seconds per HTTP request


_SECTION_TYPES = {"sampling": SamplingConfig, "backend": BackendConfig, "strategy": StrategyConfig,
                  "verifier": VerifierConfig, "execution": ExecutionConfig}  # fmt: skip
TOP_FIELDS = ("task", "model", "limit", "data_source", "prompt_format", "num_fewshot")
TOP_LATER: dict[str, Any] = {"prompt_format": "chat", "num_fewshot": 0}
# identity 1 (before sections): fields left out of the flat hash at their default, so older runs kept their ids
LEGACY_LATER: dict[str, Any] = {"pf_iterations": 1, "until_successes": 2, "round_size": None, "chat_template": None,
                                "prm_model": None, "prm_aggregation": None, "genrm_score": None,
                                "model_args": None, "gen_kwargs": None, "prompt_format": "chat",
                                "num_fewshot": 0}  # fmt: skip


def _flat_names() -> dict[str, tuple[str | None, str]]:
    """Flat option name (run.json's key, the API's keyword) -> (section or None for the top, field)."""
    out: dict[str, tuple[str | None, str]] = {name: (None, name) for name in TOP_FIELDS}
    for section, cls in _SECTION_TYPES.items():
        for f in fields(cls):
            out[section if f.name == "name" else f.name] = (section, f.name)
    return out


FLAT = _flat_names()
NON_IDENTITY = tuple(k for k, (s, _) in FLAT.items() if s == "execution")  # tteval 0.1's _NON_IDENTITY


@dataclass
class RunConfig:
    """Everything that determines a run's samples (and, in `execution`, how it is carried out)."""

    task: str = "gsm8k"
    model: str = "smollm2"
    limit: int | float | None = None  # None: the whole task; a float in (0, 1): that share of it (lm-eval)
    data_source: str = "auto"
    prompt_format: str = "chat"  # chat: the model's chat template; raw: plain text for base models
    num_fewshot: int = 0  # --num-fewshot: worked examples (the task YAML's fewshot file) before every question
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    backend: BackendConfig = field(default_factory=BackendConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    verifier: VerifierConfig = field(default_factory=VerifierConfig)
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)

    # ------------------------------------------------------------------ flat view (CLI, API, run.json)
    @classmethod
    def of(cls, **flat: Any) -> RunConfig:
        """A config from flat options (`tteval run`'s names: n, backend, strategy, pf_step_tokens, out, ...)."""
        unknown = sorted(set(flat) - set(FLAT))
        if unknown:
            raise TtevalError(f"unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(FLAT))}")
        config = cls()
        for key, value in flat.items():
            section, name = FLAT[key]
            setattr(getattr(config, section) if section else config, name, value)
        return config

    def to_flat(self) -> dict[str, Any]:
        """The flat config, as run.json records it (one key per option)."""
        return {key: getattr(getattr(self, s) if s else self, name) for key, (s, name) in FLAT.items()}

    def replace(self, **flat: Any) -> RunConfig:
        """A copy with some flat options changed (a sweep's grid point, one task of several)."""
        return RunConfig.of(**{**self.to_flat(), **flat})

    @classmethod
    def from_dict(cls, d: Any, where: str = "config") -> RunConfig:
        """A RunConfig from a flat dict (a run.json's config): unknown keys are ignored, known ones must be well typed."""
        if not isinstance(d, dict):
            raise TtevalError(f"{where} must be a JSON object, got {type(d).__name__}")
        values = {}
        for key, (section, name) in FLAT.items():
            if key in d:
                hint = typing.get_type_hints(_SECTION_TYPES[section] if section else cls)[name]
                values[key] = _typed(d[key], hint, f"{where}: field '{key}'")
        return cls.of(**values)

    # ------------------------------------------------------------------ derived settings
    def genrm_mode(self) -> str | None:
        """GenRM's chain score mode when GenRM scores anything, else None: --genrm-score, by default the authors'
        "hybrid" for --verifier genrm and tteval's forced "normalized" verdict for particle filtering's reward."""
        from tteval.strategies.registry import strategy_for
        from tteval.verifiers.registry import scorer_name

        if scorer_name(self) != "genrm":
            return None
        return self.verifier.genrm_score or strategy_for(self).genrm_default

    def prm_aggregation(self) -> str:
        """The PRM's step aggregation: --prm-aggregation, by default the strategy's (model for particle filtering)."""
        from tteval.strategies.registry import strategy_for

        return self.verifier.prm_aggregation or strategy_for(self).prm_default

    def validate(self) -> None:
        """Refuse, in one line, an unknown name, a value out of bounds or a combination that cannot run."""
        from tteval.backends.registry import backend_spec
        from tteval.bounds import RUN_BOUNDS, check_fields
        from tteval.passthrough import check_passthrough
        from tteval.strategies.registry import strategy_for
        from tteval.tasks import PROMPT_FORMATS, check_limit
        from tteval.verifiers.registry import check_verifier

        spec = backend_spec(self.backend.name)
        strategy_for(self)
        if self.prompt_format not in PROMPT_FORMATS:
            raise TtevalError(f"unknown --prompt-format '{self.prompt_format}'; choose one of: {', '.join(PROMPT_FORMATS)}")
        check_limit(self.limit)
        check_fields(SimpleNamespace(**self.to_flat()), RUN_BOUNDS if not isinstance(self.limit, float) else
                     {k: b for k, b in RUN_BOUNDS.items() if k != "limit"})  # fmt: skip
        check_verifier(self)
        if self.strategy.pf_iterations > 1 and self.sampling.n < 2:
            raise TtevalError("particle Gibbs (--pf-iterations > 1) needs -n of at least 2 (a reference plus a free particle)")
        check_passthrough("--model-args", self.backend.name, self.backend.model_args)
        check_passthrough("--gen-kwargs", self.backend.name, self.sampling.gen_kwargs)
        spec.check(self)

    # ------------------------------------------------------------------ identity and run id
    def identity(self) -> dict[str, Any]:
        """What decides the samples, and only what is in use (identity 2): hashed into the run id."""
        from tteval.backends.registry import backend_spec
        from tteval.strategies.registry import strategy_for
        from tteval.verifiers.registry import scorer_identity

        out: dict[str, Any] = {"version": IDENTITY_VERSION, **_pick(self, TOP_FIELDS, TOP_LATER)}
        out["sampling"] = _pick(self.sampling, [f.name for f in fields(SamplingConfig)], SamplingConfig.LATER)
        out["sampling"]["max_tokens"] = self.token_cap()  # the default and the same number given are one run
        out["backend"] = {"name": self.backend.name,
                          **_pick(self.backend, backend_spec(self.backend.name).identity, BackendConfig.LATER)}
        out["strategy"] = {"name": self.strategy.name,
                           **_pick(self.strategy, strategy_for(self).identity, StrategyConfig.LATER)}
        scorer = scorer_identity(self)
        if scorer:
            out["verifier"] = scorer
        return out

    def legacy_identity(self) -> dict[str, Any]:
        """Identity 1, as tteval computed it before config sections: the flat config less `NON_IDENTITY` and the
        `LEGACY_LATER` fields at their default (plus two rules that kept older GenRM and particle runs apart)."""
        flat = self.to_flat()
        out = {k: v for k, v in flat.items()
               if k not in NON_IDENTITY and not (k in LEGACY_LATER and v == LEGACY_LATER[k])}  # fmt: skip
        if self.genrm_mode():  # GenRM's scoring changed after 0.1: such runs got new ids, not a mixed resume
            out["genrm_score"] = self.genrm_mode()
        out["max_tokens"] = self.token_cap()
        if self.strategy.name == "particle-filter":  # --max-tokens caps a particle since 0.2
            out["pf_particle_max_tokens"] = self.token_cap()
        return out

    def token_cap(self) -> int:
        """Tokens one candidate may generate: --max-tokens, by default 256, and for a particle the authors' own
        bound, pf_max_steps x pf_step_tokens (probabilistic-inference-scaling caps steps, not a particle's total)."""
        if self.sampling.max_tokens is not None:
            return self.sampling.max_tokens
        st = self.strategy
        return st.pf_max_steps * st.pf_step_tokens if st.name == "particle-filter" else 256

    def check_fewshot(self) -> None:
        """The task has --num-fewshot worked examples (a sweep or a task list checks every run before the first)."""
        if self.num_fewshot:
            from tteval.tasks import load_task, with_fewshot

            tasks_dir = Path(self.execution.tasks_dir) if self.execution.tasks_dir else None
            with_fewshot(load_task(self.task, tasks_dir), self.num_fewshot, self.data_source, tasks_dir)

    def matches(self, recorded: dict[str, Any]) -> bool:
        """Whether a run folder's recorded identity is this config's (identity 2, or identity 1 for older folders)."""
        return recorded == (self.identity() if "version" in recorded else self.legacy_identity())

    def changed_fields(self, recorded: dict[str, Any]) -> list[str]:
        """The options (by their flat names) where a recorded identity differs from this config's."""
        now = _flattened(self.identity() if "version" in recorded else self.legacy_identity())
        old = _flattened(recorded)
        return sorted(k for k in set(now) | set(old) if now.get(k) != old.get(k))

    def run_id(self) -> str:
        return self._name(self.identity())

    def legacy_run_id(self) -> str:
        """The run id identity 1 gave this config: the folder an older tteval wrote it to."""
        return self._name(self.legacy_identity())

    def _name(self, identity: dict[str, Any]) -> str:
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:8]
        model = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(self.model).name or self.model).strip("-")[:40]
        return f"{self.task}_{model}_{self.strategy.name}_n{self.sampling.n}_{digest}"


def _pick(obj: Any, names: Any, later: dict[str, Any]) -> dict[str, Any]:
    """`obj`'s fields `names`, less those in `later` at their default."""
    return {k: getattr(obj, k) for k in names if not (k in later and getattr(obj, k) == later[k])}


def _flattened(identity: dict[str, Any]) -> dict[str, Any]:
    """An identity by flat option names (a section's `name` is the option named like the section)."""
    out: dict[str, Any] = {}
    for k, v in identity.items():
        if isinstance(v, dict) and k in SECTIONS:
            out.update({k if f == "name" else f: x for f, x in v.items()})
        else:
            out[k] = v
    return out


def _typed(value: Any, hint: Any, where: str) -> Any:
    """`value` if it has the type `hint` (int, float, str, bool or Optional of one), else a one-line error."""
    options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    if value is None and type(None) in options:
        return None
    for t in options:
        if t is bool and isinstance(value, bool):
            return value
        if t is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if t is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if t is str and isinstance(value, str):
            return value
        if typing.get_origin(t) is dict and isinstance(value, dict) and all(isinstance(k, str) for k in value):
            return value
    names = " or ".join("null" if t is type(None) else "object" if typing.get_origin(t) is dict else t.__name__
                        for t in options)  # fmt: skip
    raise TtevalError(f"{where} must be {names}, got {json.dumps(value)[:60]}")
