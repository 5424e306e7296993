"""Backends turn batches of sampling requests into completions (llama.cpp on CPU, vLLM on GPU, OpenAI HTTP)."""

from tteval.backends.base import Backend, Completion, Request, Usage

__all__ = ["Backend", "Completion", "Request", "Usage"]
