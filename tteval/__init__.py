"""tteval: a test-time-compute evaluation harness for LLMs."""

__version__ = "0.1.0"
