"""Neutralising untrusted text before it reaches Slack, and fencing it for the model."""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import urlsplit

ZWSP = "\u200b"
_CONTROL = re.compile(r"<([^<>]*)>")
_BROADCAST_WORD = re.compile(r"@(channel|here|everyone)\b", re.IGNORECASE)
_BARE_URL = re.compile(r"\b((?:https?|ftp)://[^\s<>|]+|www\.[^\s<>|]+)", re.IGNORECASE)


def _host_allowed(url: str, allowed: Sequence[str]) -> bool:
    try:
        host = (urlsplit(url if "://" in url else "http://" + url).hostname or "").lower()
    except ValueError:
        return False
    return any(host == d.lower() or host.endswith("." + d.lower()) for d in allowed if d)


def neutralise(text: str, *, allowed_domains: Sequence[str], limit: int) -> str:
    """Make untrusted text safe to post: no pings, no live foreign links, bounded length."""
    text = str(text)
    text = text.replace("&", "&amp;")

    def control(match: re.Match[str]) -> str:
        inner = match.group(1)
        target, _, label = inner.partition("|")
        if re.match(r"(?i)(https?://|mailto:)", target) and _host_allowed(target, allowed_domains):
            return (
                f"<{target}|{label.replace('<', '').replace('>', '')}>" if label else f"<{target}>"
            )
        shown = label or target
        return "&lt;" + _defuse(shown) + "&gt;"

    # Slack control sequences first (they are the only way to ping or link explicitly).
    out: list[str] = []
    pos = 0
    for m in _CONTROL.finditer(text):
        out.append(_escape_plain(text[pos : m.start()], allowed_domains))
        out.append(control(m))
        pos = m.end()
    out.append(_escape_plain(text[pos:], allowed_domains))
    result = "".join(out)
    if len(result) > limit:
        result = result[: max(0, limit - 1)] + "…"
    return result


def _defuse(text: str) -> str:
    text = text.replace("!", "!" + ZWSP).replace("@", "@" + ZWSP)
    text = _BROADCAST_WORD.sub(lambda m: "@" + ZWSP + m.group(1), text)
    return (
        _BARE_URL.sub(lambda m: m.group(0).replace(".", ZWSP + "."), text)
        .replace("://", ":" + ZWSP + "//")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
    )


def _escape_plain(text: str, allowed: Sequence[str]) -> str:
    text = text.replace("<", "&lt;").replace(">", "&gt;")
    text = _BROADCAST_WORD.sub(lambda m: "@" + ZWSP + m.group(1), text)

    def url(m: re.Match[str]) -> str:
        u = m.group(0)
        if _host_allowed(u, allowed):
            return u
        return u.replace("://", ":" + ZWSP + "//").replace(".", ZWSP + ".")

    return _BARE_URL.sub(url, text)


def as_data(label: str, text: str) -> str:
    """Fence untrusted text for the model: data, never instructions."""
    safe = str(text).replace("</data", "&lt;/data")
    return f'<data source="{label}">\n{safe}\n</data>'
