"""Alias matching (`bot/planner.py` `AliasPattern`, `clean_text`): the same matches as before,
in work linear in the request's length.

Aliases used to be matched by one backtracking regex per pattern (`_legacy_regex` below, kept
here as the reference). `AliasPattern` must find exactly its first match — same requests,
same captured values — on any cleaned request, and its work (start positions its searches
try, which it counts) must grow linearly with the request. The old regex tried every end of
each placeholder against every end of the next, so the same count grew as n^k for k
placeholders on a request that fails late: the linearity tests below would fail on it. No
test here times anything.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bot.planner as planner
from bot.planner import (
    MENTION,
    AliasPattern,
    AliasPlanner,
    PlanRequest,
    Proposals,
    Unknown,
    clean_text,
)
from bot.policy import parse_policy
from bot.policy_types import PLACEHOLDER
from tests.conftest import REQUESTER, examples, policy_data


def _legacy_regex(pattern: str) -> re.Pattern[str]:
    """How aliases were matched before `AliasPattern`: the reference for its matches."""
    out, pos = [], 0
    for m in PLACEHOLDER.finditer(pattern):
        out.append(r"\s+".join(re.escape(w) for w in pattern[pos : m.start()].split(" ")))
        out.append(f"(?P<{m.group(1)}>.+?)")
        pos = m.end()
    out.append(r"\s+".join(re.escape(w) for w in pattern[pos:].split(" ")))
    return re.compile("^" + "".join(out) + r"[.!]?$", re.IGNORECASE | re.DOTALL)


def _legacy_clean(text: str) -> str:
    return " ".join(MENTION.sub(" ", text).split()).strip()


def _legacy_match(pattern: str, text: str) -> dict[str, str] | None:
    found = _legacy_regex(pattern).match(text)
    return None if found is None else found.groupdict()


# -- the same matches as the regex -----------------------------------------------------------

POLICY_ALIASES = [
    "restart {service}",
    "scale {service} in {env}",
    "flush {name}",
    "announce {text}",
    "deploy {version} to {env}",
    "page {team} {message}",
    "ticket {project} {priority} {title}",
    "touch it",
]

CASES = [
    ("restart {service}", "restart web", {"service": "web"}),
    ("restart {service}", "Restart WEB.", {"service": "WEB"}),
    ("restart {service}", "restart web..", {"service": "web."}),
    ("restart {service}", "restart web!", {"service": "web"}),
    ("restart {service}", "restart web now please", {"service": "web now please"}),
    ("restart {service}", "restart", None),
    ("restart {service}", "restart .", {"service": "."}),
    ("restart {service}", "restarted web", None),
    ("restart {service}", "please restart web", None),
    ("scale {service} in {env}", "scale web in prod", {"service": "web", "env": "prod"}),
    ("scale {service} in {env}", "scale web in in in", {"service": "web", "env": "in in"}),
    ("scale {service} in {env}", "scale in in prod", {"service": "in", "env": "prod"}),
    ("scale {service} in {env}", "SCALE web IN prod!", {"service": "web", "env": "prod"}),
    ("scale {service} in {env}", "scale web inprod", None),
    ("scale {service} in {env}", "scale web in", None),
    ("page {team} {message}", "page ops db is down", {"team": "ops", "message": "db is down"}),
    ("page {team} {message}", "page ops", None),
    ("touch it", "touch it", {}),
    ("touch it", "Touch IT!", {}),
    ("touch it", "touch it!!", None),
    ("{a} to {b} now", "x to y to z now", {"a": "x", "b": "y to z"}),
    ("{a} to {b} now", "x to y to z now.", {"a": "x", "b": "y to z"}),
    ("{a} to {b} now", "x to y to z", None),
    ("{a}{b}", "xyz", {"a": "x", "b": "yz"}),
    ("{a}{b}", "x", None),
    ("{a}/{b}", "x/y/z!", {"a": "x", "b": "y/z"}),
    ("v{a}", "vv", {"a": "v"}),
    ("{a} {b} {c} now", "x y z w now", {"a": "x", "b": "y", "c": "z w"}),
    ("restart  {service}", "restart web", None),  # two spaces in a pattern: never in a request
]


@pytest.mark.parametrize(("pattern", "text", "expected"), CASES)
def test_examples_match_as_the_regex_did(
    pattern: str, text: str, expected: dict[str, str] | None
) -> None:
    assert AliasPattern.compile(pattern).match(text) == expected
    assert _legacy_match(pattern, text) == expected


def test_a_placeholder_named_twice_is_refused_as_before() -> None:
    with pytest.raises(re.error):
        _legacy_regex("{a} to {a}")
    with pytest.raises(re.error):
        AliasPattern.compile("{a} to {a}")


WORDS = ["to", "TO", "in", "x", "a", "now", "ab", ".", "!", "a.b", "x.", "now!", "/", "v"]


@st.composite
def _patterns(draw: st.DrawFn) -> str:
    """Alias patterns: words and placeholders, joined by a space, nothing or two spaces."""
    parts = draw(st.lists(st.one_of(st.sampled_from(WORDS), st.just("{}")), max_size=7))
    out, count = [], 0
    for index, part in enumerate(parts):
        if index:
            out.append(draw(st.sampled_from([" ", " ", " ", "", "  "])))
        if part == "{}":
            part, count = f"{{p{count}}}", count + 1
        out.append(part)
    return "".join(out)


_texts = st.one_of(
    st.lists(st.sampled_from(WORDS), max_size=14).map(" ".join),
    st.text(alphabet="atoxnwiv .!/", max_size=30),
)


@settings(max_examples=examples(4000))
@given(pattern=_patterns(), raw=_texts)
def test_every_cleaned_request_matches_as_the_regex_did(pattern: str, raw: str) -> None:
    text = clean_text(raw)
    assert AliasPattern.compile(pattern).match(text) == _legacy_match(pattern, text)


@st.composite
def _requests_for(draw: st.DrawFn, pattern: str) -> str:
    """A request written from `pattern`: each placeholder filled with a few words, maybe an
    ending after it (so most of these match, some only nearly)."""
    fill = st.lists(st.sampled_from(WORDS), min_size=1, max_size=3).map(" ".join)
    text = PLACEHOLDER.sub(lambda _: draw(fill), pattern)
    return text + draw(st.sampled_from(["", ".", "!", "..", " x", "!."]))


@settings(max_examples=examples(4000))
@given(data=st.data(), pattern=_patterns())
def test_requests_written_from_the_pattern_match_as_the_regex_did(
    data: st.DataObject, pattern: str
) -> None:
    text = clean_text(data.draw(_requests_for(pattern)))
    assert AliasPattern.compile(pattern).match(text) == _legacy_match(pattern, text)


@settings(max_examples=examples(400))
@given(words=st.lists(st.sampled_from(WORDS), max_size=12))
def test_the_policy_aliases_match_as_the_regex_did(words: list[str]) -> None:
    for prefix in ("restart", "scale", "page", "ticket", "deploy", "touch", ""):
        text = clean_text(f"{prefix} {' '.join(words)}")
        for pattern in POLICY_ALIASES:
            assert AliasPattern.compile(pattern).match(text) == _legacy_match(pattern, text)


# -- linear work -----------------------------------------------------------------------------

# Requests that fail late, the worst case for the backtracking regex: every placeholder end
# it tries is followed by the next literal, and the request fails only at its last word.
ADVERSARIAL = [
    ("{a} to {b} now", lambda n: " ".join(["x to"] * (n // 2)) + " later"),
    ("scale {service} in {env} please", lambda n: "scale " + " ".join(["x in"] * (n // 2))),
    ("{a} {b} {c} now", lambda n: " ".join(["x"] * n)),
    ("deploy {version} to {env} at {time} sharp", lambda n: "deploy " + "to at " * (n // 2)),
    ("restart {service}", lambda n: "restart " + " ".join(["web"] * n)),
    ("page {team} {message}", lambda n: " ".join(["page"] * n)),
]


@pytest.mark.parametrize(("pattern", "make"), ADVERSARIAL)
def test_work_grows_linearly_with_the_request(pattern: str, make: Any) -> None:
    alias = AliasPattern.compile(pattern)
    small = clean_text(make(40))  # small enough for the regex, cubic on some of these
    assert alias.match(small) == _legacy_match(pattern, small)
    work = {}
    for n in (500, 2000, 8000):
        text = clean_text(make(n))
        tried = alias.match_counted(text)[1]
        # At most one start position per character, one per placeholder, one for the head.
        assert tried <= len(text) + len(alias.names) + 1
        work[n] = tried
    # 4x the words, about 4x the work (a fixed prefix makes it a little more); quadratic
    # would be 16x, cubic 64x.
    assert work[2000] <= 4.1 * work[500]
    assert work[8000] <= 4.1 * work[2000]


def test_the_hostile_requests_do_not_match() -> None:
    for pattern, make in ADVERSARIAL[:4]:
        assert AliasPattern.compile(pattern).match(clean_text(make(16000))) is None


# -- clean_text --------------------------------------------------------------------------------


@settings(max_examples=examples(2000))
@given(
    raw=st.one_of(
        st.text(alphabet="<@UWA1|>x \n\t", max_size=40),
        st.lists(
            st.sampled_from(["<@U1>", "<@U1|a b>", "<@U1|", "<@W2", ">", "x", "<@", "|"]),
            max_size=10,
        ).map(" ".join),
    )
)
def test_clean_text_is_as_before(raw: str) -> None:
    assert clean_text(raw) == _legacy_clean(raw)


class _Recording:
    """Stands in for `MENTION`, keeping each text it was asked to read."""

    def __init__(self) -> None:
        self.read: list[str] = []

    def sub(self, repl: str, text: str) -> str:
        self.read.append(text)
        return MENTION.sub(repl, text)


def test_clean_text_never_reads_past_the_last_closing_bracket(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`MENTION` scans from `<@U1|` to the next `>`: in text that ends at a `>` each scan
    ends inside the mention it removes (linear); with no `>` after it, every such start
    would scan to the end (quadratic)."""
    recording = _Recording()
    monkeypatch.setattr(planner, "MENTION", recording)
    hostile = " ".join(["<@U1|x"] * 4000)
    assert clean_text(hostile) == " ".join(hostile.split())
    assert clean_text("<@U1> restart web <@U1|x") == "restart web <@U1|x"
    assert clean_text(f"{hostile} <@U2|y> hi {hostile}") == f"hi {' '.join(hostile.split())}"
    assert recording.read[0] == ""
    assert recording.read[1] == "<@U1>"
    assert recording.read[2].endswith("<@U2|y>")


# -- the planner -----------------------------------------------------------------------------


def test_the_alias_planner_plans_as_before_and_refuses_hostile_requests(
    tmp_path: Path,
) -> None:
    from bot.app import build_registry

    data = policy_data(tmp_path)
    data["aliases"]["{service} in {env} now"] = {"runbook": "scale"}
    policy = parse_policy(data)
    aliases = AliasPlanner(policy, build_registry(policy))

    def plan(text: str) -> Any:
        return aliases.plan(
            PlanRequest(
                request_id="r1", trace_id="t1", text=text, requester=REQUESTER, channel="C1"
            )
        )

    done = plan("<@U0BOT> Scale web in prod!")
    assert isinstance(done, Proposals)
    assert [(c.tool, c.args) for c in done.calls] == [("scale", {"service": "web", "env": "prod"})]
    done = plan("web in staging now")
    assert isinstance(done, Proposals)
    assert done.calls[0].args == {"service": "web", "env": "staging"}
    assert isinstance(plan("restart the thing that broke"), Unknown)
    hostile = "<@U0BOT> " + " ".join(["x in"] * 8000) + " later"
    assert isinstance(plan(hostile), Unknown)
