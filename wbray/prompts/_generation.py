"""The candidate-generation prompt: the benchmark query, as is, as the only user message."""

from __future__ import annotations


def render_generation_messages(query: str, system_prompt: str | None = None) -> list[dict[str, str]]:
    """Build the chat messages that ask a candidate model to answer one query.

    Args:
        query: The benchmark row's ``query`` text, sent unchanged.
        system_prompt: Optional system message placed first. None sends none, as upstream does; an
            empty string is sent as an empty system message (it suppresses the default system
            prompt some chat templates insert).

    Returns:
        ``[{"role": "system", ...}]`` (when given) followed by ``{"role": "user", "content": query}``.
    """
    messages: list[dict[str, str]] = []
    if system_prompt is not None:
        messages.append({"role": "system", "content": system_prompt})
    messages.append({"role": "user", "content": query})
    return messages
