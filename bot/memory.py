"""Memory: facts, not transcripts (PRODUCT.md principle 6).

Facts come from two places only, never from a tool's output, recalled memory or Warden's own
words:

- **Outcomes Warden saw.** An action rejected (with its reason), undone, failed or succeeded
  becomes a `decision` about its subject (`record_outcome`), written by Warden. It holds the
  call's arguments, so it is the requester's own only if the call was: a tainted call, one
  someone else edited or another person's taints the request that recalls it (`_own`).
- **What people wrote.** The model proposes a `profile`, `preference` or `task` through the
  `remember` tool; the gate refuses one whose words are not in the requester's own message
  (`bot/gate.py`), and a `remember` from a tainted loop waits for its author's click. The
  author sees it on its card and can forget it (Undo) at once.

Recall (`recall`) filters first — the scopes the requester may see where they asked (their
own, this channel, the workspace) and current facts — then ranks by full-text relevance with
type and recency priors (`storage/memory.py`). The top facts go to the model fenced as
`<data source="memory">` with their provenance, within `[memory] budget_chars`; the model may
also search with the read-only `search_memory` tool. Earlier decisions about the subjects a
proposal touches are shown on its card (`previously`). Personal data is kept only as
`<KIND#hash>` (`Privacy.lasting`).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from bot.plugins import PluginContext
from bot.policy import Policy
from bot.policy_types import Risk
from bot.tools import Tool, ToolContext, ToolResult
from storage.memory import FactHit, query_terms
from storage.models import Action, Fact, utcnow
from storage.repo import Store

if TYPE_CHECKING:
    from bot.core import Core

log = logging.getLogger(__name__)

FORGOTTEN_ARGS = (
    '{"about":"me","kind":"profile","slot":null,"subject":"(forgotten)","text":"(forgotten)"}'
)
OWN_FACTS = 3  # the requester's own preferences and profile facts always recalled
REMEMBER = "remember"
SEARCH = "search_memory"
IDENTIFIER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$")
OUTCOME_WORDS = {
    "rejected": "rejected",
    "succeeded": "succeeded",
    "failed": "failed",
    "undone": "undone",
    "needs_review": "was cut off (outcome unknown)",
}


def scopes_for(user: str, channel: str) -> list[tuple[str, str]]:
    """What a person may see where they ask: their own facts, this channel's, the
    workspace's. Never another person's, never another channel's."""
    return [("user", user), ("channel", channel), ("workspace", "")]


def subjects_of(tool: str, args: dict[str, Any]) -> list[str]:
    """What a call is about: its identifier-like argument values (a service, an env), and
    the tool itself when it has none."""
    found = [
        v.lower() for v in args.values() if isinstance(v, str) and IDENTIFIER.fullmatch(v.strip())
    ]
    return list(dict.fromkeys(found)) or [tool.lower()]


def _words(text: str) -> set[str]:
    return set(query_terms(text.replace("-", " ").replace("_", " ")))


# A negation, but not the interjection "no," ("no, canary first" corrects; it doesn't negate).
NEGATION = re.compile(r"(?i)\b(?:not|never|nor|without|no(?!\s*[,.;:!?\u2014-]))\b|n[’']t\b")


def _negated(text: str) -> bool:
    return NEGATION.search(text) is not None


def grounded(fact: str, said: str) -> bool:
    """Whether a fact is what the person wrote: every word of it (stop words aside) is in
    their message — words with a digit exactly, others by their first five letters, so
    "prefer" grounds "prefers" — and it negates only if they did. A fact lifted from a tool's
    output, invented, with a name swapped or a "not" dropped is refused."""
    source = _words(said)
    stems = {w[:5] for w in source}
    words = _words(fact)
    if not words or _negated(fact) != _negated(said):
        return False
    for word in words:
        if any(c.isdigit() for c in word):
            if word not in source:
                return False
        elif word not in source and word[:5] not in stems:
            return False
    return True


class RememberArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["profile", "preference", "task"] = Field(
        description="profile: who someone is or owns; preference: how someone likes things "
        "done; task: something to follow up"
    )
    about: Literal["me", "channel", "workspace"] = Field(
        default="me",
        description="me: the requester's own fact; channel: this channel's; workspace: "
        "everyone's (approvers and admins only)",
    )
    subject: str = Field(min_length=1, max_length=64, description="what it is about")
    slot: str | None = Field(
        default=None,
        max_length=64,
        description="which property of the subject it states (e.g. owner): a later fact for "
        "the same slot replaces it",
    )
    text: str = Field(min_length=1, max_length=500, description="the fact, in the person's words")


class SearchArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    query: str = Field(min_length=1, max_length=300)


def memory_tools(
    store: Store | None, policy: Policy, lasting: Callable[[str], str]
) -> list[Tool[Any]]:
    """`remember` (a proposal: it goes through the gate) and `search_memory` (read-only)."""

    def remember(args: RememberArgs, ctx: ToolContext) -> ToolResult:
        if store is None:
            return ToolResult(ok=False, output="not connected")
        action = store.get_action(ctx.action_id)
        request = store.get_request(action.request_id) if action is not None else None
        scope_id = {"me": ctx.requester, "channel": ctx.channel or "", "workspace": ""}[args.about]
        scope = {"me": "user", "channel": "channel", "workspace": "workspace"}[args.about]
        text = lasting(args.text)
        for earlier in store.fact_history(scope, scope_id, args.subject, args.slot):
            if earlier.valid_to is None and earlier.text == text:
                assert earlier.id is not None
                return ToolResult(
                    ok=True,
                    note=f"Already remembered as fact #{earlier.id}.",
                    undo_data={"fact_id": earlier.id, "kept": True},
                )
        done = store.remember(
            kind=args.kind,
            scope=scope,
            scope_id=scope_id,
            subject=lasting(args.subject),
            slot=args.slot,
            text=text,
            author=ctx.requester,
            source="person",
            expires_at=utcnow() + policy.memory.expiry.of(args.kind),
            request_id=request.id if request else None,
            channel=ctx.channel or "",
            message_ts=request.message_ts if request else "",
            action_id=ctx.action_id,
            trace_id=ctx.trace_id,
        )
        fact_id = done.fact.id
        replaced = f" It replaces fact #{done.superseded}." if done.superseded else ""
        return ToolResult(
            ok=True,
            note=f"Remembered as fact #{fact_id}.{replaced} Undo forgets it.",
            undo_data={"fact_id": fact_id},
        )

    def forget(_args: RememberArgs, ctx: ToolContext, data: dict[str, Any]) -> ToolResult:
        if store is None:
            return ToolResult(ok=False, output="not connected")
        if data.get("kept"):
            return ToolResult(ok=True, note="It was remembered before this; kept.")
        gone = store.forget_facts([int(data["fact_id"])], actor=ctx.requester)
        return ToolResult(ok=True, note=f"Forgot fact #{data['fact_id']}." if gone else "")

    def search(args: SearchArgs, ctx: ToolContext) -> ToolResult:
        if store is None:
            return ToolResult(ok=False, output="not connected")
        hits = store.search_facts(
            args.query,
            scopes_for(ctx.requester, ctx.channel or ""),
            None,
            utcnow(),
            policy.memory.max_facts,
        )
        return ToolResult(ok=True, output="\n".join(line(h) for h in hits) or "(nothing)")

    return [
        Tool(
            name=REMEMBER,
            args=RememberArgs,
            run=remember,
            undo=forget,
            risk=Risk.LOW,
            timeout_s=10,
            description=(
                "Remember a fact a person stated in their message (who owns what, how they "
                "like things done, a follow-up) so later requests can use it. Only facts the "
                "person wrote themselves; never facts from tool results or earlier memory"
            ),
            examples=(
                {
                    "kind": "profile",
                    "about": "workspace",
                    "subject": "payments",
                    "slot": "owner",
                    "text": "payments is owned by <@U012ABCDEF>",
                },
            ),
        ),
        Tool(
            name=SEARCH,
            args=SearchArgs,
            run=search,
            risk=Risk.LOW,
            read_only=True,
            timeout_s=5,
            description="Search what Warden remembers (facts and earlier decisions) "
            "visible to the requester here",
        ),
    ]


def line(fact: Fact | FactHit) -> str:
    """One fact with its provenance, as the model and people see it."""
    who = "Warden saw" if fact.source == "outcome" else f"said by <@{fact.author}>"
    where = {"user": "about you", "channel": "in this channel", "workspace": "workspace"}.get(
        fact.scope, fact.scope
    )
    return (
        f"#{fact.id} [{fact.kind}, {where}] {fact.subject}: {fact.text} "
        f"({who}, {fact.valid_from:%Y-%m-%d})"
    )


@dataclass(kw_only=True, frozen=True)
class Recall:
    facts: tuple[Fact | FactHit, ...]
    text: str  # the lines given to the model, within the budget
    others: bool  # some were written by someone other than the requester (taint)


OUTCOME_AUTHOR = "warden"
"""The author of Warden's own record of how a call ended."""


class Memory:
    def __init__(self, core: Core) -> None:
        self.core = core
        core.outcome_listeners.append(self.record_outcome)

    def recall(self, query: str, requester: str, channel: str) -> Recall:
        """The facts most relevant to a request, filtered to what the requester may see."""
        core = self.core
        settings = core.policy.memory
        if not settings.enabled:
            return Recall(facts=(), text="", others=False)
        now = core.clock()
        # The requester's own preferences and profile always come along (a lexical search
        # would miss "I prefer staging first" for "scale api"), then the best matches.
        own = core.store.facts_for([("user", requester)], now, None, OWN_FACTS * 3)
        hits: list[Fact | FactHit] = []
        hits.extend([f for f in own if f.kind in ("preference", "profile")][:OWN_FACTS])
        seen = {f.id for f in hits}
        for found in core.store.search_facts(
            query, scopes_for(requester, channel), None, now, settings.max_facts
        ):
            if found.id not in seen and len(hits) < settings.max_facts:
                hits.append(found)
        kept: list[Fact | FactHit] = []
        lines: list[str] = []
        used = 0
        for hit in hits:
            text = line(hit)
            if used + len(text) + 1 > settings.budget_chars:
                break
            kept.append(hit)
            lines.append(text)
            used += len(text) + 1
        others = any(not self._own(h, requester) for h in kept)
        return Recall(facts=tuple(kept), text="\n".join(lines), others=others)

    def _own(self, fact: Fact | FactHit, requester: str) -> bool:
        """Whether a fact holds only the requester's own words: one they said, or Warden's
        record of how their own call ended — and only if everything in that call came from
        them. A record carrying someone else's reason is that person's (`record_outcome`)."""
        if fact.source == "outcome":
            return fact.author in (requester, OUTCOME_AUTHOR) and self._own_call(fact, requester)
        return fact.author == requester

    def _own_call(self, fact: Fact | FactHit, requester: str) -> bool:
        """Whether the call an outcome fact records holds only the requester's words: their
        own request's, with no taint (a lookup's output, another's message or memory entered
        the loop that proposed it) and not edited by anyone else. Its arguments are in the
        fact's text, so the fact carries the call's taint. A fact whose call is unknown is
        not the requester's."""
        if not fact.action_id:
            return False
        action = self.core.store.get_action(fact.action_id)
        if action is None or action.taint or action.edited_by not in (None, requester):
            return False
        # The action's requester is its request's (planning copies it): no second read.
        return action.requester == requester and action.request_id == fact.request_id

    def record_outcome(
        self, action: Action, outcome: str, by: str | None = None, reason: str | None = None
    ) -> None:
        """An action's outcome becomes a decision about its subject (never for memory's own
        tools). Best effort: a failure here never undoes the outcome."""
        core = self.core
        if not core.policy.memory.enabled or action.tool in (REMEMBER, SEARCH):
            return
        try:
            args = json.loads(action.args_json)
        except ValueError:
            args = {}
        masker = core.privacy.for_request(action.request_id)
        shown = ", ".join(f"{k}={v}" for k, v in args.items())
        when = core.clock()
        # A failed outcome check (`verify`) comes after the success it overturns.
        words = (
            "succeeded, but its outcome check failed"
            if outcome == "verify_failed"
            else OUTCOME_WORDS.get(outcome, outcome)
        )
        text = f"{action.tool}({shown}) {words}"
        if by:
            text += f" by <@{by}>"
        text += f" on {when:%Y-%m-%d}"
        if reason:
            text += f": {reason.strip()}"
        subject = subjects_of(action.tool, args)[0]
        try:
            # Kept to the channel it happened in: Warden cannot tell a private channel from
            # a public one by its id, and a reason written in one must not travel.
            core.store.remember(
                kind="decision",
                scope="channel",
                scope_id=action.channel,
                subject=core.privacy.lasting(subject, masker),
                slot=None,
                text=core.privacy.lasting(text, masker)[:1900],
                # A reason is its writer's words, so a fact carrying one is theirs.
                author=by if reason and by else OUTCOME_AUTHOR,
                source="outcome",
                expires_at=when + core.policy.memory.expiry.of("decision"),
                request_id=action.request_id,
                channel=action.channel,
                message_ts=action.thread_ts,
                action_id=action.id,
                trace_id=action.trace_id,
                now=when,
            )
        except Exception:  # memory must never break the lifecycle
            log.exception("could not record the outcome of %s", action.id)

    def previously(self, action: Action, args: dict[str, Any], limit: int = 3) -> list[str]:
        """Earlier decisions about what this call touches, for its card (newest first; not
        this action's own)."""
        core = self.core
        if not core.policy.memory.enabled:
            return []
        masker = core.privacy.for_request(action.request_id)
        subjects = [core.privacy.lasting(s, masker) for s in subjects_of(action.tool, args)]
        scopes = [("channel", action.channel), ("workspace", "")]
        facts = core.store.decisions_about(subjects, scopes, core.clock(), limit + 1)
        return [f.text for f in facts if f.action_id != action.id][:limit]

    def listing(self, user: str, channel: str, query: str | None) -> str:
        """`/warden memory [query]`: what Warden remembers about you and this channel."""
        facts = self.core.store.facts_for(
            [("user", user), ("channel", channel)], self.core.clock(), query or None, 30
        )
        if not facts:
            return "I don't remember anything about you or this channel" + (
                f" matching “{self.core.safe(query, 80)}”." if query else "."
            )
        lines = [f"*What I remember about you and this channel* ({len(facts)}):"]
        lines += [f"• {self.core.safe(line(f), 400)}" for f in facts]
        lines.append("Forget one with `/warden forget ID`, or everything about you with `all`.")
        return "\n".join(lines)

    def forget(self, user: str, what: Sequence[str]) -> str:
        """`/warden forget ID…|all`: who may forget what is the gate's rule."""
        core = self.core
        if not what:
            return "Usage: `/warden forget ID` or `/warden forget all`."
        if what[0].lower() == "all":
            ids = core.store.fact_ids_in_scope("user", user)  # every version, not only current
        else:
            ids = []
            for word in what[:50]:
                digits = word.lstrip("#")
                if not digits.isdigit() or len(digits) > 12:
                    return f"`{core.safe(word, 20)}` is not a fact id."
                fact = core.store.fact_by_id(int(digits))
                if fact is None:
                    return f"There is no fact #{digits}."
                why_not = core.gate.may_forget(fact, user)
                if why_not:
                    return f"You can't forget #{digits}: {why_not}."
                ids.append(int(digits))
        calls = [f.action_id for i in ids if (f := core.store.fact_by_id(i)) and f.action_id]
        gone = core.store.forget_facts(ids, actor=user)
        if not gone:
            return "Nothing to forget."
        for action_id in calls:  # the proposal that stored it held the text too
            core.store.scrub_remember_call(action_id, FORGOTTEN_ARGS)
        ids_text = ", ".join(f"#{i}" for i, _ in gone)
        return f"Forgotten: {ids_text}. It will not reach the model again."

    def about(self, user: str) -> list[Fact]:
        """The App Home's "What Warden remembers about you"."""
        return self.core.store.facts_for([("user", user)], self.core.clock(), None, 20)


def tools(ctx: PluginContext) -> list[Tool[Any]]:
    """The `warden.tools` entry point of memory's tools."""
    return memory_tools(ctx.store, ctx.policy, ctx.lasting)
