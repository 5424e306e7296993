"""The model-based scorers by name (`--verifier`): how each is built (imported lazily), which settings change its
scores, and what it needs. The scorer in use is `--verifier`, else the strategy's own (particle filtering's
process reward: GenRM on the policy model). Oracle graders (math, code) are not here: they are `tteval.graders`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from tteval.errors import TtevalError

if TYPE_CHECKING:
    from tteval.backends.base import Backend
    from tteval.config import RunConfig


@dataclass(frozen=True)
class ScorerSpec:
    """One scorer: `factory` builds it on the policy backend; `identity` are the VerifierConfig fields (effective
    values: `settings`) that change its scores; `check` refuses settings it cannot run with."""

    name: str
    factory: Callable[[RunConfig, Backend], Any]
    settings: Callable[[RunConfig], dict[str, Any]]
    check: Callable[[RunConfig], None] = lambda config: None


def _genrm(config: RunConfig, backend: Backend) -> Any:
    from tteval.verifiers.genrm import GenRMScorer

    v = config.verifier
    return GenRMScorer(backend, v.verifications, v.verifier_max_tokens, seed=config.sampling.seed,
                       mode=config.genrm_mode() or "hybrid")  # fmt: skip


def _genrm_settings(config: RunConfig) -> dict[str, Any]:
    v = config.verifier
    return {"verifications": v.verifications, "verifier_max_tokens": v.verifier_max_tokens, "genrm_score": config.genrm_mode()}


def _genrm_check(config: RunConfig) -> None:
    if config.verifier.genrm_score is not None:
        from tteval.verifiers.genrm import MODES

        if config.verifier.genrm_score not in MODES:
            raise TtevalError(f"unknown --genrm-score '{config.verifier.genrm_score}'; choose one of: {', '.join(MODES)}")


def _prm(config: RunConfig, backend: Backend) -> Any:
    from tteval.verifiers.prm import make_prm_scorer

    return make_prm_scorer(str(config.verifier.prm_model), config.prm_aggregation())


def _prm_check(config: RunConfig) -> None:
    if not config.verifier.prm_model:
        raise TtevalError("--verifier prm needs --prm-model (e.g. Qwen/Qwen2.5-Math-PRM-7B)")
    from tteval.backends.registry import backend_spec

    if not backend_spec(config.backend.name).pooling:
        raise TtevalError("--verifier prm runs the PRM on vLLM's pooling API: use --backend vllm (GPU)")


SCORERS: dict[str, ScorerSpec] = {
    "genrm": ScorerSpec("genrm", _genrm, _genrm_settings),
    "prm": ScorerSpec("prm", _prm, lambda c: {"prm_model": c.verifier.prm_model, "prm_aggregation": c.prm_aggregation()},
                      _prm_check),
}  # fmt: skip
VERIFIERS = ("none", *SCORERS)  # --verifier's choices


def scorer_name(config: RunConfig) -> str | None:
    """The scorer a run uses: --verifier, else its strategy's own (None: no model-based scorer)."""
    from tteval.strategies.registry import strategy_for

    return config.verifier.name if config.verifier.name != "none" else strategy_for(config).default_scorer


def scorer_identity(config: RunConfig) -> dict[str, Any] | None:
    """The scorer in use and its effective settings, for the run id; None when the run uses none."""
    name = scorer_name(config)
    return None if name is None else {"name": name, **SCORERS[name].settings(config)}


def check_verifier(config: RunConfig) -> None:
    """Refuse an unknown --verifier, --prm-aggregation or --genrm-score, or a scorer that cannot run here."""
    if config.verifier.name not in VERIFIERS:
        raise TtevalError(f"unknown verifier '{config.verifier.name}'; choose one of: {', '.join(VERIFIERS)}")
    if config.verifier.prm_aggregation is not None:
        from tteval.verifiers.prm import PRM_AGGREGATIONS

        if config.verifier.prm_aggregation not in PRM_AGGREGATIONS:
            raise TtevalError(f"unknown --prm-aggregation '{config.verifier.prm_aggregation}'; choose one of: "
                              f"{', '.join(PRM_AGGREGATIONS)}")  # fmt: skip
    if config.verifier.name != "none":
        SCORERS[config.verifier.name].check(config)
    _genrm_check(config)  # --genrm-score is checked even where no GenRM runs


def make_scorer(config: RunConfig, backend: Backend) -> Any:
    """The model-based scorer a run needs, or None: a PRM on its own vLLM engine (--verifier prm), else the
    generative verifier on the policy backend (GenRM, and the process reward of particle filtering on CPU)."""
    name = scorer_name(config)
    return None if name is None else SCORERS[name].factory(config, backend)
