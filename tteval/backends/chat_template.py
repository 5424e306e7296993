"""Client-side chat templates: a Hugging Face style jinja template rendered in a sandbox, for servers that apply
their own template and do not expose it (raw-prompt strategies on the openai backend need one)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from tteval.errors import TtevalError


def load_chat_template(template: str | None) -> str | None:
    """A jinja chat template given inline, or the path of a file holding one (as --chat-template takes it)."""
    if template is None:
        return None
    if "{" not in template:
        path = Path(template).expanduser()
        if not path.is_file():
            raise TtevalError(f"chat template file not found: {template}")
        template = path.read_text(encoding="utf-8")
    return template


def render_chat_template(template: str, messages: Sequence[tuple[str, str]]) -> str:
    """Render a Hugging Face style jinja chat template (sandboxed) with the generation prompt appended.

    bos_token and eos_token render empty: the server's tokenizer adds BOS to a /v1/completions prompt itself."""
    import jinja2
    import jinja2.sandbox

    def raise_exception(message: str) -> None:
        raise TtevalError(f"the chat template rejected the messages: {message}")

    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
    )
    env.globals["raise_exception"] = raise_exception
    try:
        return env.from_string(template).render(
            messages=[{"role": role, "content": content} for role, content in messages],
            add_generation_prompt=True, bos_token="", eos_token="",
        )  # fmt: skip
    except jinja2.TemplateError as exc:
        raise TtevalError(f"the chat template could not be rendered: {exc}") from None
