"""The kinds of personal data, their placeholders and what a finder reports (`Kind`,
`PLACEHOLDER`, `Found`), and how the finders read the words around a number they found.

`bot/pii.py` tells the whole story; the finders are `bot/pii_finders.py` and
`bot/pii_phones.py`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    """A kind of personal data; the name is the placeholder's prefix (`<EMAIL_1>`)."""

    EMAIL = "EMAIL"
    PHONE = "PHONE"
    CARD = "CARD"
    IBAN = "IBAN"
    IP = "IP"
    NATIONAL_ID = "NATIONAL_ID"
    ADDRESS = "ADDRESS"


PLACEHOLDER = re.compile(r"<(EMAIL|PHONE|CARD|IBAN|IP|NATIONAL_ID|ADDRESS)_([1-9][0-9]{0,5})>")


@dataclass(kw_only=True, frozen=True)
class Found:
    """One piece of personal data in a text: `text[start:end]` is replaced as a whole (for a
    `<mailto:…>` link that is the whole link); `value` is the data itself and `normal` the
    form equal values share (emails case-folded, phones E.164, cards and IBANs digits only)."""

    kind: Kind
    start: int
    end: int
    value: str
    normal: str


Spans = list[tuple[int, int]]


def overlaps(span: tuple[int, int], spans: Spans) -> bool:
    """Whether `span` overlaps any of `spans`."""
    return any(span[0] < end and start < span[1] for start, end in spans)


def compact(value: str) -> str:
    """`value` as letters and digits only, upper case: the form numbers and ids share."""
    return re.sub(r"[^0-9A-Za-z]", "", value).upper()


# --- The words around a value ---------------------------------------------------------------

_WORD = re.compile(r"[^\W\d_][\w-]*")
# The end of a clause; not the dot of "Tel. 0612…" or "IdNr. 123…", which names what follows.
_CLAUSE_END = re.compile(r"\.\s+(?![\d+(])|[!?]\s|[;\n\u2014]")


def clause(text: str, start: int, end: int, before: int = 40, after: int = 24) -> tuple[str, str]:
    """The words before and after `text[start:end]` within its clause (at most `before`
    and `after` characters): what a cue word must be among to count."""
    size = end - start
    head = _CLAUSE_END.split(text[max(0, start - before) : end])[-1][:-size]
    tail = _CLAUSE_END.split(text[start : end + after])[0][size:]
    return head, tail


def named(text: str, start: int, end: int, words: re.Pattern[str]) -> bool:
    """Whether one of the two words right before `text[start:end]`, in its clause, is one
    of `words` ("order 4155550123", "SSN 666-12-3456", "EAN 4006381333931")."""
    head, _ = clause(text, start, end, before=32, after=0)
    return words.search(" ".join(_WORD.findall(head)[-2:])) is not None


def cued(text: str, start: int, end: int, cue: re.Pattern[str], after: int = 24) -> bool:
    """Whether `cue` is among the words before or after `text[start:end]` in its clause."""
    head, tail = clause(text, start, end, after=after)
    return cue.search(head) is not None or cue.search(tail) is not None
