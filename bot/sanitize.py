"""Neutralising untrusted text before it reaches Slack, and fencing it for the model.

`neutralise` is what stands between text a model or a command wrote and a Slack message: no
broadcast pings, and no live link to a host outside the allowed domains. Links are read the
way a browser (and so Slack) reads them, with a WHATWG URL parser (ada), not urllib: urllib
reads `https://evil.example\\@docs.example.com/` as a link to docs.example.com, a browser as
one to evil.example.

A link stays live only when every check passes: plain printable ASCII (RFC 3986 characters
only, so no backslash, whitespace or look-alike punctuation for Slack and a browser to read
differently), an authority that is a bare host name (letters, digits, dots, hyphens, a port),
no user or password, a web scheme, and a host that the parser agrees is an allowed domain or
a subdomain of one. Everything else that Slack could turn into a link (`scheme://…`, `mailto:`,
`<…>` control sequences, bare domains such as `evil.example/x`, e-mail addresses) is defused
with zero-width spaces, which keep the text readable but stop Slack autolinking it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import ada_url

if TYPE_CHECKING:
    from ada_url.ada_adapter import ParseAttributes

ZWSP = "\u200b"
ELLIPSIS = "…"
_CONTROL = re.compile(r"<([^<>]*)>")
_BROADCAST_WORD = re.compile(r"@(channel|here|everyone)\b", re.IGNORECASE)

# "." and the full stops that IDNA maps to "." (a browser reads `evil。example` as evil.example).
_DOTS = ".\u3002\uff0e\uff61"
# A dotted name whose last label is 2+ letters (or punycode) and ends there: `v1.2`, `3.14` and
# `agent.max_steps` are not domains. Bounded repetition keeps the scan linear on hostile input
# such as "a.a.a.a…".
_DOMAIN = (
    rf"(?:[\w-]{{1,63}}[{_DOTS}]){{1,24}}"
    r"(?:xn--[a-z0-9-]{1,59}|[^\W\d_]{2,63})(?![A-Za-z0-9_])"
)
_SCHEME = r"[a-z][a-z0-9+.-]{0,31}://"
# Everything Slack could read as a link. A token runs to whitespace (or a `<`/`>`), so whatever
# Slack takes as the end of a link, the judged token holds all of it.
_LINK = re.compile(
    rf"(?P<scheme>{_SCHEME}[^\s<>]*)"
    r"|(?P<mailto>mailto:[^\s<>]*)"
    rf"|(?P<domain>{_DOMAIN}(?:[:/?#@\\][^\s<>]*)?)",
    re.IGNORECASE,
)
# Links inside a live link (`?next=https://…`, `/x,evil.example`) are judged on their own.
_EMBEDDED = re.compile(
    rf"(?P<scheme>{_SCHEME}.*)|(?P<mailto>mailto:.*)|(?P<domain>{_DOMAIN})",
    re.IGNORECASE | re.DOTALL,
)
_CLEAN = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
_HOST_AND_PORT = re.compile(r"(?:[A-Za-z0-9-]+\.)*[A-Za-z0-9-]+\.?(?::[0-9]{1,5})?")
_AUTHORITY_END = re.compile(r"[/?#]")
# Closing punctuation is not part of a link: "see https://docs.example.com/x)." is judged
# without the ")." (which, after a host, would make a host no browser could resolve anyway).
_TRAILING = ".,:;!?'\"*_~)]}"
_WEB_SCHEMES = frozenset({"http:", "https:", "ftp:"})

_Piece = tuple[str, bool]  # (Slack text, atomic: dropped whole rather than cut when clipping)


def neutralise(text: str, *, allowed_domains: Sequence[str], limit: int) -> str:
    """Make untrusted text safe to post: no pings, no live foreign links, bounded length."""
    text = str(text)
    allowed = _normalise_domains(allowed_domains)
    pieces: list[_Piece] = []
    pos = 0
    # Slack control sequences first (they are the only way to ping or link explicitly).
    for m in _CONTROL.finditer(text):
        pieces.extend(_plain(text[pos : m.start()], allowed))
        pieces.extend(_control(m.group(1), allowed))
        pos = m.end()
    pieces.extend(_plain(text[pos:], allowed))
    return _clip(pieces, limit)


_FENCE = re.compile(r"(?i)<\s*/?\s*data\b")


def as_data(label: str, text: str) -> str:
    """Fence untrusted text for the model: data, never instructions."""
    # Any spelling of a fence tag the model might honour (`</DATA>`, `< / data`, `<data …>`)
    # is made inert, so the text can neither close its fence nor open a new one.
    safe = _FENCE.sub(lambda m: "&lt;" + m.group()[1:], str(text))
    return f'<data source="{label}">\n{safe}\n</data>'


# --- rendering -----------------------------------------------------------------------------


def _control(inner: str, allowed: tuple[str, ...]) -> list[_Piece]:
    target, bar, label = inner.partition("|")
    if _target_ok(target, allowed):
        shown = "".join(p for p, _ in _plain(label, allowed))
        return [(f"<{_escape(target)}|{shown}>" if bar else f"<{_escape(target)}>", True)]
    # Not a link we allow (or a ping, mention, channel, date…): show its text, inert.
    shown = (label or target).replace("!", "!" + ZWSP).replace("@", "@" + ZWSP)
    return [("&lt;", False), *_plain(shown, allowed), ("&gt;", False)]


def _plain(text: str, allowed: tuple[str, ...]) -> Iterator[_Piece]:
    pos = 0
    for m in _LINK.finditer(text):
        token = m.group(0)
        yield _gap(text[pos : m.start()]), False
        pos = m.end()
        core = token.rstrip(_TRAILING)
        piece = _link(core, m.lastgroup or "", allowed) if core else ("", False)
        if piece[1]:  # live: the closing punctuation after it stays plain text
            yield piece
            pos = m.start() + len(core)
        else:
            yield _gap(_defuse(token)), False
    yield _gap(text[pos:]), False


def _link(token: str, kind: str, allowed: tuple[str, ...]) -> _Piece:
    """A live link (atomic) if it passes, else its defused text."""
    if kind == "mailto":
        live, head = _mailto_ok(token, allowed), token.partition("?")[0]
    elif kind == "scheme":
        live = _web_link_ok(token, allowed)
        scheme, _, rest = token.partition("://")
        head = scheme + "://" + _AUTHORITY_END.split(rest, maxsplit=1)[0]
    else:
        live, head = _bare_ok(token, allowed), _AUTHORITY_END.split(token, maxsplit=1)[0]
    if not live:
        return _gap(_defuse(token)), False
    return _broadcasts(_escape(head) + _embedded(token[len(head) :], allowed)), True


def _embedded(rest: str, allowed: tuple[str, ...]) -> str:
    """The path, query and fragment of a live link, with any link inside them judged too."""
    out: list[str] = []
    pos = 0
    for m in _EMBEDDED.finditer(rest):
        token = m.group(0)
        out.append(_escape(rest[pos : m.start()]))
        if m.lastgroup == "domain" and m.start() > 0 and rest[m.start() - 1] == "/":
            out.append(_escape(token))  # a path segment such as /report.pdf
        else:
            out.append(_link(token, m.lastgroup or "", allowed)[0])
        pos = m.end()
    out.append(_escape(rest[pos:]))
    return "".join(out)


def _gap(text: str) -> str:
    return _broadcasts(_escape(text).replace(">", "&gt;").replace("<", "&lt;"))


def _escape(text: str) -> str:
    return text.replace("&", "&amp;")


def _broadcasts(text: str) -> str:
    return _BROADCAST_WORD.sub(lambda m: "@" + ZWSP + m.group(1), text)


def _defuse(token: str) -> str:
    """Break a would-be link so Slack shows it as text: `https:​//evil​.example`."""
    token = token.replace(":", ":" + ZWSP)
    for dot in _DOTS:
        token = token.replace(dot, ZWSP + dot)
    return token


def _clip(pieces: list[_Piece], limit: int) -> str:
    if sum(len(text) for text, _ in pieces) <= limit:
        return "".join(text for text, _ in pieces)
    budget = max(0, limit - 1)
    out: list[str] = []
    for text, atomic in pieces:
        if len(text) <= budget:
            out.append(text)
            budget -= len(text)
            continue
        if not atomic:  # text and defused links may be cut; a live link never is
            cut = text[:budget]
            amp = cut.rfind("&")
            if amp != -1 and ";" not in cut[amp:]:
                cut = cut[:amp]  # not half an entity
            elif cut.endswith(":") and text[len(cut) : len(cut) + 1] == ZWSP:
                cut = cut[:-1]  # not "mailto:" without the space that defused it
            out.append(cut)
        break
    return "".join(out) + ELLIPSIS


# --- judging links -------------------------------------------------------------------------


def _normalise_domains(domains: Sequence[str]) -> tuple[str, ...]:
    out: list[str] = []
    for domain in domains:
        name = str(domain).strip().strip(".")
        parsed = _parse("http://" + name) if name else None
        host = parsed.get("hostname", "").removesuffix(".") if parsed else ""
        if host:
            out.append(host)
    return tuple(out)


def _parse(url: str) -> ParseAttributes | None:
    try:
        return ada_url.parse_url(url)
    except Exception:  # ValueError for an invalid URL, UnicodeEncodeError for a surrogate
        return None


def _host_ok(parsed: ParseAttributes, allowed: tuple[str, ...]) -> bool:
    if parsed.get("username") or parsed.get("password"):
        return False
    host = parsed.get("hostname", "")
    if parsed.get("host_type", ada_url.HostType.DEFAULT) != ada_url.HostType.DEFAULT:
        return host in allowed  # an IP address: only itself, never "subdomains"
    host = host.removesuffix(".")  # docs.example.com. is docs.example.com
    return bool(host) and any(host == d or host.endswith("." + d) for d in allowed)


def _target_ok(target: str, allowed: tuple[str, ...]) -> bool:
    if target[:7].lower() == "mailto:":
        return _mailto_ok(target, allowed)
    return _web_link_ok(target, allowed)


def _web_link_ok(url: str, allowed: tuple[str, ...]) -> bool:
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() + ":" not in _WEB_SCHEMES or not _CLEAN.fullmatch(url):
        return False
    if not _HOST_AND_PORT.fullmatch(_AUTHORITY_END.split(rest, maxsplit=1)[0]):
        return False
    parsed = _parse(url)
    return (
        parsed is not None and parsed.get("protocol") in _WEB_SCHEMES and _host_ok(parsed, allowed)
    )


def _bare_ok(token: str, allowed: tuple[str, ...]) -> bool:
    """A bare domain (`docs.example.com/x`), which Slack links as http://…"""
    if not _CLEAN.fullmatch(token):
        return False
    if not _HOST_AND_PORT.fullmatch(_AUTHORITY_END.split(token, maxsplit=1)[0]):
        return False
    parsed = _parse("http://" + token)
    return parsed is not None and _host_ok(parsed, allowed)


def _mailto_ok(url: str, allowed: tuple[str, ...]) -> bool:
    """`mailto:a@docs.example.com?subject=…`: every address at an allowed domain."""
    if url[:7].lower() != "mailto:" or not _CLEAN.fullmatch(url):
        return False
    addresses, _, query = url[7:].partition("?")
    if "@" in query or "%40" in query.lower():
        return False  # ?cc=, ?to= and friends add recipients
    for address in addresses.split(","):
        local, at, domain = address.partition("@")
        if not local or not at or "%" in address or not _HOST_AND_PORT.fullmatch(domain):
            return False
        if ":" in domain:
            return False
        parsed = _parse("http://" + domain)
        if parsed is None or not _host_ok(parsed, allowed):
            return False
    return True
