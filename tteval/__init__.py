"""tteval: a test-time-compute evaluation harness for LLMs.

Public API (imported on first use, so `import tteval` stays cheap): pass_at_k, maj_at_k, best_of_k, eff_at_k,
summarize, evaluate, load_runs, compare_runs, answer_classes — see `tteval.api`.
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["pass_at_k", "maj_at_k", "best_of_k", "eff_at_k", "summarize", "evaluate", "load_runs", "compare_runs",
           "answer_classes"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from tteval import api

        return getattr(api, name)
    raise AttributeError(f"module 'tteval' has no attribute {name!r}")
