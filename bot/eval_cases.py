"""Evaluation cases: the suite format (`[suite]`, `[[case]]`, a case module's `cases()`)
and what the production path observed of one case (`Observed`). See bot/evaluation.py."""

from __future__ import annotations

import hashlib
import importlib.util
import re
import sys
import threading
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NoReturn

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bot.cards import Card
from bot.chat import ChannelInfo
from bot.errors import ChatRefused, ConfigError

Outcome = Literal["card", "run", "refuse", "suggest", "clarify", "answer"]
MODELS = ("alias", "replay", "live")
DEFAULT_REQUESTER = "U0EVAL"
DEFAULT_CHANNEL = "C0GENERAL"
DEFAULT_DM = "D0EVAL"
BOT_USER = "U0WARDEN"
WARDEN = "warden"  # a history turn written by Warden itself
CASE_TIMEOUT_S = 180.0
REPORT_VERSION = 1
EVAL_REFUSAL = "not_in_evaluation"  # the code EvalChat refuses every channel operation with


# -- the case format -------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def printable(text: str) -> str:
    """Text a model, a cassette or a suite wrote, safe for a terminal and for XML: control
    characters (ESC sequences, NUL, BEL…) are shown as escapes, never passed through."""
    return _CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HistoryTurn(_Strict):
    author: str = Field(min_length=1)
    text: str = Field(min_length=1)


class MemoryFact(_Strict):
    kind: Literal["profile", "preference", "decision", "task"]
    scope: Literal["user", "channel", "workspace"] = "user"
    scope_id: str | None = None  # default: the requester (user), the channel (channel)
    subject: str = Field(min_length=1)
    slot: str | None = None
    text: str = Field(min_length=1)
    author: str = DEFAULT_REQUESTER


class EditSpec(_Strict):
    by: str = Field(min_length=1)
    args: dict[str, Any]


class ScriptTurn(_Strict):
    """One answer of a scripted model (`bot/cassettes.py`): a tool call — a proposal when it
    has `confidence` — or plain text (`say`)."""

    call: str | None = Field(default=None, min_length=1)
    args: dict[str, Any] = Field(default_factory=dict)
    confidence: float | None = Field(default=None, ge=0, le=1)
    why: str | None = None
    say: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> ScriptTurn:
        if (self.call is None) == (self.say is None):
            raise ValueError("a script turn is either a call (call = NAME) or text (say = …)")
        return self


class Expect(_Strict):
    outcome: Outcome
    tool: str | None = None
    args: dict[str, Any] | None = None
    args_match: Literal["exact", "subset", "pattern"] = "subset"
    tier: Literal["low", "medium", "high", "critical"] | None = None
    approvers: list[str] | None = None
    approvals: int | None = None
    taint: bool | None = None
    never: list[str] = Field(default_factory=list)
    never_run: list[str] = Field(default_factory=list)
    never_post_to: list[str] = Field(default_factory=list)
    max_steps: int | None = Field(default=None, ge=0)
    max_cost_usd: float | None = Field(default=None, ge=0)


class CaseSpec(_Strict):
    name: str = Field(min_length=1)
    request: str = Field(min_length=1)
    requester: str = DEFAULT_REQUESTER
    channel: str | None = None
    dm: bool = False
    history: list[HistoryTurn] = Field(default_factory=list)
    memory: list[MemoryFact] = Field(default_factory=list)
    lookups: dict[str, str] = Field(default_factory=dict)
    edit: EditSpec | None = None
    cassette: str | None = None
    script: list[ScriptTurn] | None = None  # the model's answers: this case's model is a script
    expect: Expect

    @property
    def where(self) -> str:
        return self.channel or (DEFAULT_DM if self.dm else DEFAULT_CHANNEL)


@dataclass(kw_only=True)
class Suite:
    name: str
    source: str  # the file or module it came from
    base: Path  # cassette paths are relative to this directory
    policy: Path | None
    cases: list[CaseSpec]

    def cassette_path(self, case: CaseSpec) -> Path:
        if case.cassette:
            return self.base / case.cassette
        # Readable, and unique: names that differ only in punctuation or after the 80th
        # character get files of their own.
        slug = re.sub(r"[^a-z0-9]+", "-", case.name.lower()).strip("-")[:80] or "case"
        tag = hashlib.sha256(case.name.encode()).hexdigest()[:8]
        return self.base / "cassettes" / self.name / f"{slug}-{tag}.json"


def _parse_cases(raw: Any, source: str) -> list[CaseSpec]:
    if not isinstance(raw, list):
        raise ConfigError(f"{source}: cases must be a list of tables")
    cases: list[CaseSpec] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        try:
            case = CaseSpec.model_validate(item)
        except ValidationError as exc:
            name = item.get("name", f"#{i + 1}") if isinstance(item, dict) else f"#{i + 1}"
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            raise ConfigError(f"{source}: case {name!r}: {problems}") from None
        if case.name in seen:
            raise ConfigError(f"{source}: two cases are named {case.name!r}")
        if printable(case.name) != case.name:
            raise ConfigError(f"{source}: case {case.name!r}: a name has no control characters")
        seen.add(case.name)
        cases.append(case)
    return cases


def load_suite(where: str) -> Suite:
    """A suite from a TOML file, or from a Python module (a `.py` path or a dotted name)
    whose `cases()` returns case dicts."""
    path = Path(where)
    if path.suffix == ".toml":
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{where}: cannot read cases: {exc}") from None
        meta = data.pop("suite", {})
        if not isinstance(meta, dict):
            raise ConfigError(f"{where}: [suite] must be a table (name = …, policy = …)")
        unknown = set(data) - {"case"} | set(meta) - {"name", "policy"}
        if unknown:
            raise ConfigError(f"{where}: unknown keys: {', '.join(sorted(unknown))}")
        policy = path.parent / str(meta["policy"]) if "policy" in meta else None
        return _suite(
            name=str(meta.get("name", path.stem)),
            source=where,
            base=path.parent,
            policy=policy,
            cases=_parse_cases(data.get("case", []), where),
        )
    module = _import(where)
    make = getattr(module, "cases", None)
    if not callable(make):
        raise ConfigError(f"{where}: a case module needs a function cases()")
    base = Path(module.__file__ or ".").parent
    # `SUITE = {"name": …, "policy": …}` (the `[suite]` table), or `SUITE` a name and
    # `POLICY` a path; the policy is relative to the module's directory.
    meta = getattr(module, "SUITE", None)
    meta = dict(meta) if isinstance(meta, Mapping) else {"name": meta}
    name = meta.get("name") or Path(where).stem.rsplit(".", 1)[-1]
    policy = meta.get("policy") or getattr(module, "POLICY", None)
    try:
        made = make()
    except ConfigError:
        raise
    except Exception as exc:  # a case module is code: its failure is the suite's problem
        raise ConfigError(f"{where}: cases() failed: {type(exc).__name__}: {exc}") from None
    return _suite(
        name=str(name),
        source=where,
        base=base,
        policy=base / str(policy) if policy else None,
        cases=_parse_cases(made, where),
    )


def _suite(**fields: Any) -> Suite:
    suite = Suite(**fields)
    if not suite.cases:
        # An emptied suite must not keep CI green.
        raise ConfigError(f"{suite.source}: the suite has no cases")
    if suite.policy is not None and not suite.policy.is_file():
        raise ConfigError(
            f"{suite.source}: its [suite] policy {suite.policy} does not exist "
            "(the path is relative to the suite file)"
        )
    return suite


def _import(where: str) -> Any:
    path = Path(where)
    try:
        if path.suffix == ".py":
            if not path.is_file():
                raise ConfigError(f"{where}: no such case module")
            name = f"warden_eval_{path.stem}"
            spec = importlib.util.spec_from_file_location(name, path)
            if spec is None or spec.loader is None:
                raise ConfigError(f"{where}: cannot import it")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
            return module
        return importlib.import_module(where)
    except ConfigError:
        raise
    except Exception as exc:  # SyntaxError, or anything the module raises as it loads
        raise ConfigError(f"{where}: cannot import it: {type(exc).__name__}: {exc}") from None


# -- what a case produced --------------------------------------------------------------------


class Observed(BaseModel):
    """What the production path did with one case."""

    outcome: str  # card | run | refuse | suggest | clarify | answer | error
    tool: str | None = None
    args: dict[str, Any] = Field(default_factory=dict)
    tier: str | None = None
    approvers: list[str] = Field(default_factory=list)
    approvals: int | None = None
    taint: bool = False
    taint_sources: str | None = None
    proposed: list[str] = Field(default_factory=list)  # every tool proposed or called
    ran: list[str] = Field(default_factory=list)  # tools that ran with no person's click
    posted_to: list[str] = Field(default_factory=list)  # channels Warden posted in
    steps: int = 0  # model calls
    cost_usd: float = 0.0
    tokens: int = 0
    detail: str = ""  # the answer, question or refusal reason
    problem: str | None = None  # the case could not be evaluated (e.g. its cassette)

    def decision(self) -> dict[str, Any]:
        """What a policy review compares."""
        return {
            "outcome": self.outcome,
            "tool": self.tool,
            "tier": self.tier,
            "approvers": self.approvers,
            "approvals": self.approvals,
        }


class EvalChat:
    """A `Chat` that only records what Warden would have posted."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.posts: list[dict[str, Any]] = []
        self.ephemerals: list[dict[str, Any]] = []
        self._ts = 5000

    def _next(self) -> str:
        with self._lock:
            self._ts += 1
            return f"1800000000.{self._ts:06d}"

    def post(
        self, channel: str, text: str, thread_ts: str | None = None, key: str | None = None
    ) -> str:
        ts = self._next()
        with self._lock:
            self.posts.append({"channel": channel, "text": text, "ts": ts, "key": key})
        return ts

    def find_message(self, channel: str, thread_ts: str | None, key: str) -> str | None:
        with self._lock:
            for post in self.posts:
                if post.get("key") == key and post["channel"] == channel:
                    return str(post["ts"])
        return None

    def post_card(self, channel: str, card: Card, thread_ts: str | None = None) -> str:
        ts = self._next()
        with self._lock:
            self.posts.append({"channel": channel, "text": card.summary, "ts": ts, "card": card})
        return ts

    def find_card(self, channel: str, thread_ts: str | None, action_id: str) -> str | None:
        with self._lock:
            for post in self.posts:
                card = post.get("card")
                if card is not None and card.action_id == action_id:
                    return str(post["ts"])
        return None

    def update_card(self, channel: str, ts: str, card: Card) -> None:
        pass

    def delete(self, channel: str, ts: str) -> None:
        pass

    def ephemeral(self, channel: str, user: str, text: str, thread_ts: str | None = None) -> None:
        with self._lock:
            self.ephemerals.append({"channel": channel, "user": user, "text": text})

    def react(self, channel: str, ts: str, name: str) -> None:
        pass

    def unreact(self, channel: str, ts: str, name: str) -> None:
        pass

    def user_info(self, user: str) -> dict[str, str]:
        return {"id": user, "name": user.lower(), "real_name": "", "title": "", "tz": "UTC"}

    def set_status(self, channel: str, thread_ts: str, status: str) -> None:
        pass

    # Channel operations never happen in an evaluation (the executor runs no tool code there
    # either): each is refused, so nothing can reach a real workspace even by mistake.

    def _refuse(self) -> NoReturn:
        raise ChatRefused(EVAL_REFUSAL)

    def create_channel(self, name: str, private: bool = False) -> str:
        self._refuse()

    def find_channel(self, name: str) -> ChannelInfo | None:
        self._refuse()

    def channel_info(self, channel: str) -> ChannelInfo:
        self._refuse()

    def post_creation_note(self, channel: str, text: str, action_id: str) -> None:
        self._refuse()

    def creating_action(self, channel: str) -> str | None:
        self._refuse()

    def invite(self, channel: str, users: Sequence[str]) -> None:
        self._refuse()

    def kick(self, channel: str, user: str) -> None:
        self._refuse()

    def set_topic(self, channel: str, topic: str) -> None:
        self._refuse()

    def set_purpose(self, channel: str, purpose: str) -> None:
        self._refuse()

    def pin(self, channel: str, ts: str) -> None:
        self._refuse()

    def unpin(self, channel: str, ts: str) -> None:
        self._refuse()

    def archive(self, channel: str) -> None:
        self._refuse()

    def unarchive(self, channel: str) -> None:
        self._refuse()

    def usergroup_members(self, group: str) -> list[str]:
        self._refuse()
