"""Test-session setup: an isolated generation cache, so tests never read or write the user's cache."""

import os
import tempfile

os.environ.setdefault("TTEVAL_CACHE_DIR", tempfile.mkdtemp(prefix="tteval-test-cache-"))
