"""Warden's tables, all in one place (sqlmodel), and the action lifecycle's state graph.

Requests are what people asked; actions are the tool calls planned for them and carry the
lifecycle; approvals bind an approver to one exact revision of an action; `control` is the
kill switch; audit rows form a hash chain whose head lives in `audit_head`; `instance` lists
the running Warden processes and their heartbeats; `outbox` holds every Slack message Warden
owes, written in the same transaction as the change that caused it; `job_run` records which
once-per-deployment job ran for which period; `fact` is Warden's memory: typed facts with
validity intervals (queries in `storage/memory.py`); `task` and `reminder` are the to-dos and
reminders people keep in channels (queries in `storage/tasks.py`); `incident` and
`incident_event` are the incidents Warden declared and their timelines (queries in
`storage/incidents.py`); `approval_grant` holds approvers' 30-minute grants for identical calls
(queries in `storage/attention.py`, with reminders, escalation and break glass); `inbox` holds
requests from Slack stored before they were acknowledged (`storage/inbox.py`). `control` and
`audit_head` are single rows seeded by the migrations, so no writer ever has to create them.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Column, Index, Text, UniqueConstraint
from sqlalchemy import text as sql_text
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


def _risk_at_insert(context: Any) -> Any:
    """`action.proposed_risk`'s insert default: the row's own `risk`."""
    return context.get_current_parameters()["risk"]


class RequestStatus(StrEnum):
    RECEIVED = "received"  # stored from Slack, waiting for a planner worker
    PLANNING = "planning"  # a worker holds the lease
    PLANNED = "planned"  # proposals stored (or a question / answer given)
    FAILED = "failed"  # the planner was unavailable after retries; may be retried
    DONE = "done"  # nothing more to do (answered without proposals)


class ActionStatus(StrEnum):
    PROPOSED = "proposed"
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"
    EXECUTING = "executing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"
    EXPIRED = "expired"
    REFUSED = "refused"
    NEEDS_REVIEW = "needs_review"
    SUGGESTED = "suggested"  # autonomy "suggest": a card without Approve
    UNDOING = "undoing"
    UNDONE = "undone"
    UNDO_FAILED = "undo_failed"
    # A person stopped its run (Cancel): the command may have done part of its work, so a
    # reversible tool's Undo stays offered for `undo_window`.
    CANCELLED = "cancelled"


# The lifecycle as data: from each status, the statuses an action may move to. The storage
# transition (`Store.transition`) refuses anything else, and the state-machine test walks it.
# A status may move to itself where a click re-checks a waiting action (edit, policy change).
ACTION_GRAPH: dict[ActionStatus, frozenset[ActionStatus]] = {
    ActionStatus.PROPOSED: frozenset(
        {
            ActionStatus.AWAITING_APPROVAL,
            ActionStatus.APPROVED,
            ActionStatus.REFUSED,
            ActionStatus.SUGGESTED,
        }
    ),
    ActionStatus.AWAITING_APPROVAL: frozenset(
        {
            ActionStatus.AWAITING_APPROVAL,
            ActionStatus.APPROVED,
            ActionStatus.REJECTED,
            ActionStatus.EXPIRED,
            ActionStatus.REFUSED,
            ActionStatus.SUGGESTED,
        }
    ),
    ActionStatus.APPROVED: frozenset(
        {
            ActionStatus.EXECUTING,
            ActionStatus.AWAITING_APPROVAL,
            ActionStatus.EXPIRED,
            ActionStatus.REFUSED,
            ActionStatus.SUGGESTED,
        }
    ),
    ActionStatus.EXECUTING: frozenset(
        {
            ActionStatus.SUCCEEDED,
            ActionStatus.FAILED,
            ActionStatus.NEEDS_REVIEW,
            ActionStatus.CANCELLED,
        }
    ),
    ActionStatus.SUCCEEDED: frozenset({ActionStatus.UNDOING}),
    # An undo is never cancelled (it is the way back; stopping it half-way leaves two
    # half-done changes): only a run is.
    ActionStatus.CANCELLED: frozenset({ActionStatus.UNDOING}),
    ActionStatus.UNDOING: frozenset(
        {ActionStatus.UNDONE, ActionStatus.UNDO_FAILED, ActionStatus.NEEDS_REVIEW}
    ),
    # A suggestion may get its dry-run preview (itself) or be refused when a critical call's
    # dry run fails.
    ActionStatus.SUGGESTED: frozenset(
        {ActionStatus.SUGGESTED, ActionStatus.REJECTED, ActionStatus.REFUSED}
    ),
    ActionStatus.FAILED: frozenset(),
    ActionStatus.REJECTED: frozenset(),
    ActionStatus.EXPIRED: frozenset(),
    ActionStatus.REFUSED: frozenset(),
    ActionStatus.NEEDS_REVIEW: frozenset(),
    ActionStatus.UNDONE: frozenset(),
    ActionStatus.UNDO_FAILED: frozenset(),
}

INITIAL = ACTION_GRAPH[ActionStatus.PROPOSED]
"""The statuses a new action may be stored with (the gate's verdict on its proposal)."""

IN_FLIGHT = (RequestStatus.RECEIVED, RequestStatus.PLANNING)
"""Requests waiting for or being planned: what the per-requester cap counts."""

UNDOABLE = (ActionStatus.SUCCEEDED, ActionStatus.CANCELLED)
"""The statuses an undo may start from, while the action's `undo_until` is still ahead."""

TERMINAL = {
    ActionStatus.FAILED,
    ActionStatus.REJECTED,
    ActionStatus.EXPIRED,
    ActionStatus.REFUSED,
    ActionStatus.NEEDS_REVIEW,
    ActionStatus.SUGGESTED,
    ActionStatus.UNDONE,
    ActionStatus.UNDO_FAILED,
}


class SlackEvent(SQLModel, table=True):
    """Seen Slack trigger ids (`t:…`): a replayed click, modal or command acts once.

    (Retried events are refused by `request`'s unique event_id.) Kept 48 h."""

    __tablename__ = "slack_event"
    event_id: str = Field(primary_key=True, max_length=64)
    received_at: datetime = Field(default_factory=utcnow, index=True)


class Request(SQLModel, table=True):
    # One request per Slack message: an edited message is re-sent with the same ts and a new
    # event_id, and must never start a second request.
    __tablename__ = "request"
    __table_args__ = (
        UniqueConstraint("channel", "message_ts", name="uq_request_message"),
        UniqueConstraint("event_id", name="uq_request_event"),
        Index("ix_request_requester_status", "requester", "status"),
    )
    id: str = Field(primary_key=True, max_length=32)
    trace_id: str = Field(max_length=32, index=True)
    event_id: str | None = Field(default=None, max_length=64)
    team_id: str = Field(default="", max_length=32)
    channel: str = Field(max_length=32)
    thread_ts: str = Field(max_length=32, index=True)
    message_ts: str = Field(max_length=32)
    requester: str = Field(max_length=32)
    text: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(default=RequestStatus.RECEIVED, max_length=16, index=True)
    owner: str | None = Field(default=None, max_length=64)
    lease_until: datetime | None = None
    attempts: int = 0
    answer: str | None = Field(default=None, sa_column=Column(Text))
    # The request's placeholder → personal value mapping, encrypted (bot/pii.py); cleared once
    # nothing can still need it (`clear_finished_pii`).
    pii_sealed: str | None = Field(default=None, sa_column=Column(Text))
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class Action(SQLModel, table=True):
    __tablename__ = "action"
    __table_args__ = (
        Index("ix_action_status_expires", "status", "expires_at"),
        Index("ix_action_card", "channel", "card_ts"),  # a reaction names its card's message
        Index("ix_action_tool_created", "tool", "created_at"),  # unusual usage counts
        Index("ix_action_break_glass", "break_glass_by", "acknowledged_by"),  # to review
    )
    id: str = Field(primary_key=True, max_length=32)
    request_id: str = Field(foreign_key="request.id", max_length=32, index=True)
    trace_id: str = Field(max_length=32)
    tool: str = Field(max_length=64)
    args_json: str = Field(sa_column=Column(Text, nullable=False))
    policy_version: str = Field(max_length=32)
    revision: int = 1
    risk: str = Field(max_length=16)  # the tier now (an edit can raise it while it waits)
    # The tier it was proposed at: copied from `risk` by the insert and never updated, so the
    # all-time counters of `GET /metrics` count a proposal under one tier for good (None only
    # on an action not yet stored).
    proposed_risk: str | None = Field(
        default=None, max_length=16, sa_column_kwargs={"default": _risk_at_insert}
    )
    autonomy: str = Field(default="approve", max_length=16)
    confidence: float = 0.0
    rationale: str = Field(default="", sa_column=Column(Text, nullable=False))
    preview: str | None = Field(default=None, sa_column=Column(Text))
    required_approvals: int = 1
    requester: str = Field(max_length=32)
    channel: str = Field(max_length=32)
    thread_ts: str = Field(max_length=32)
    card_ts: str | None = Field(default=None, max_length=64)
    status: str = Field(default=ActionStatus.PROPOSED, max_length=24, index=True)
    status_note: str | None = Field(default=None, sa_column=Column(Text))
    expires_at: datetime | None = None
    owner: str | None = Field(default=None, max_length=64)
    lease_until: datetime | None = None
    result: str | None = Field(default=None, sa_column=Column(Text))
    undo_data: str | None = Field(default=None, sa_column=Column(Text))
    undo_until: datetime | None = None
    decided_by: str | None = Field(default=None, max_length=32)
    # Who wrote the current revision's arguments (None: the planner, for the requester).
    # They count as a requester for four eyes.
    edited_by: str | None = Field(default=None, max_length=32)
    # Why this call needs a human click although its tool is `auto`: text not written by the
    # requester entered the loop that proposed it (None: untainted).
    taint: str | None = Field(default=None, sa_column=Column(Text))
    # Warden's own words about the result (may hold Slack mentions); `result` is tool output.
    result_note: str | None = Field(default=None, sa_column=Column(Text))
    # When it was decided (approved, by a person or the gate, or rejected), started, and first
    # finished (succeeded, failed or needs review): set by `Store.transition`, read by metrics.
    decided_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = Field(default=None, index=True)
    # A runbook's outcome check (`verify`): pending → running → passed | failed | error.
    verify_status: str | None = Field(default=None, max_length=16)
    verify_at: datetime | None = None  # when it is due (pending) or was done
    verify_note: str | None = Field(default=None, sa_column=Column(Text))
    # A live run: the last lines of a running command's output (redacted, with the request's
    # placeholders), rewritten every few seconds while it runs and cleared when it ends.
    progress: str | None = Field(default=None, sa_column=Column(Text))
    # Cancel: who asked to stop the run, and when (set once, by a conditional update; the
    # replica running it sees it and stops its process group).
    cancel_requested_by: str | None = Field(default=None, max_length=32)
    cancel_requested_at: datetime | None = None
    # Reminders and escalation of a waiting card (`gate.remind_after` / `escalate_after`):
    # when its approvers were reminded and whom (user ids, comma-separated), when it was
    # escalated to the admin channel. Each is set once, by the conditional update that
    # decides which replica sends it.
    reminded_at: datetime | None = None
    reminded_users: str | None = Field(default=None, sa_column=Column(Text))
    escalated_at: datetime | None = None
    # Break glass: an admin ran this high-risk action alone, with a reason (untrusted text,
    # stored with the request's placeholders); listed for review until an approver other
    # than that admin acknowledges it.
    break_glass_by: str | None = Field(default=None, max_length=32)
    break_glass_reason: str | None = Field(default=None, sa_column=Column(Text))
    acknowledged_by: str | None = Field(default=None, max_length=32)
    acknowledged_at: datetime | None = None
    # Approvers' 30-minute grants for this exact call that did not count when it was
    # proposed, and why, in the gate's words (`Gate.grant_counts`): JSON written once by
    # `bot.attention.cover_by_grants`, `{"revision": n, "grants": [[approver, reason], …]}`,
    # shown on the card while that revision waits (None: no grant given in its channel was
    # left out).
    grant_note: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime = Field(default_factory=utcnow, index=True)
    updated_at: datetime = Field(default_factory=utcnow)


class VerifyStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    PASSED = "passed"
    FAILED = "failed"  # the check ran and said the outcome is bad: a failed outcome
    # Warden could not check (the personal data the check needs is gone, or every attempt
    # was interrupted): the outcome is unknown, not counted as failed; admins are told.
    ERROR = "error"
    CANCELED = "canceled"  # the action was undone before its check ran: nothing to check


class Feedback(SQLModel, table=True):
    """One person's 👍 / 👎 on one finished action; a changed mind updates the row."""

    __tablename__ = "feedback"
    action_id: str = Field(primary_key=True, foreign_key="action.id", max_length=32)
    person: str = Field(primary_key=True, max_length=32)
    vote: int  # +1 or -1
    comment: str = Field(default="", sa_column=Column(Text, nullable=False))
    source: str = Field(default="button", max_length=16)  # "button" | "reaction"
    tool: str = Field(max_length=64, index=True)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow, index=True)


class AlertState(SQLModel, table=True):
    """When an alert (one rule, one subject: e.g. "tool_error_rate:restart_service") last
    fired: the cool-down is a conditional update of this row, so two replicas fire once."""

    __tablename__ = "alert_state"
    key: str = Field(primary_key=True, max_length=128)
    fired_at: datetime
    value: float = 0.0


class Approval(SQLModel, table=True):
    """One approver's approval of one revision of one action."""

    __tablename__ = "approval"
    __table_args__ = (UniqueConstraint("action_id", "revision", "approver"),)
    id: int | None = Field(default=None, primary_key=True)
    action_id: str = Field(foreign_key="action.id", max_length=32, index=True)
    revision: int
    approver: str = Field(max_length=32)
    policy_version: str = Field(max_length=32)
    args_json: str = Field(sa_column=Column(Text, nullable=False))
    # The approver's 30-minute grant this approval came from (None: they clicked).
    via_grant: int | None = Field(default=None, foreign_key="approval_grant.id")
    created_at: datetime = Field(default_factory=utcnow)


class ApprovalGrant(SQLModel, table=True):
    """An approver's "approve identical calls for 30 min", given with their approval of
    `action_id`: until `until`, a new proposal of the same tool with the same canonical
    arguments (`args_digest`, a keyed hash of the real values, so no personal data is kept),
    at the same tier under the same policy version may count it as that approver's approval
    — if the gate says so at that moment. Never for critical calls."""

    __tablename__ = "approval_grant"
    __table_args__ = (
        Index("ix_approval_grant_call", "tool", "args_digest", "until"),
        {"sqlite_autoincrement": True},
    )
    id: int | None = Field(default=None, primary_key=True)
    approver: str = Field(max_length=32)
    action_id: str = Field(foreign_key="action.id", max_length=32)
    tool: str = Field(max_length=64)
    args_digest: str = Field(max_length=64)
    risk: str = Field(max_length=16)
    policy_version: str = Field(max_length=32)
    created_at: datetime = Field(default_factory=utcnow)
    until: datetime


class Control(SQLModel, table=True):
    """The kill switch: a single row (id 1). `until`: when a timed pause ends by itself."""

    __tablename__ = "control"
    id: int = Field(default=1, primary_key=True)
    paused: bool = False
    reason: str = Field(default="", sa_column=Column(Text, nullable=False))
    changed_by: str = Field(default="", max_length=32)
    changed_at: datetime = Field(default_factory=utcnow)
    until: datetime | None = None


class PauseKind(StrEnum):
    """What a scoped pause holds: one tool, one channel, or a risk tier and those above."""

    TOOL = "tool"
    CHANNEL = "channel"
    TIER = "tier"


ACTIVE_SCOPE = "ended_at IS NULL"


class PauseScope(SQLModel, table=True):
    """A scoped pause (`/pause tool:NAME`, `channel:C…`, `tier:high`), active while `ended_at`
    is null; a partial unique index keeps one active scope per (kind, value). `tiers` is the
    tiers a tier scope holds, as ",high,critical," (empty for other kinds), so the claim's
    guard matches an action's risk with one LIKE (`storage/pauses.py`). `until`: when it ends
    by itself (the auto-resume job ends it; `ended_by` is then "warden")."""

    __tablename__ = "pause_scope"
    __table_args__ = (
        Index(
            "uq_pause_scope_active",
            "kind",
            "value",
            unique=True,
            sqlite_where=sql_text(ACTIVE_SCOPE),
            postgresql_where=sql_text(ACTIVE_SCOPE),
        ),
        Index("ix_pause_scope_ended_until", "ended_at", "until"),
    )
    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=8)
    value: str = Field(max_length=64)
    tiers: str = Field(default="", max_length=40)
    reason: str = Field(default="", sa_column=Column(Text, nullable=False))
    paused_by: str = Field(max_length=32)
    started_at: datetime
    until: datetime | None = None
    ended_at: datetime | None = None
    ended_by: str | None = Field(default=None, max_length=32)


class AutonomySetting(SQLModel, table=True):
    """An admin's runtime change of a tool's autonomy stage (overrides warden.toml)."""

    __tablename__ = "autonomy_setting"
    tool: str = Field(primary_key=True, max_length=64)
    autonomy: str = Field(max_length=16)
    changed_by: str = Field(max_length=32)
    changed_at: datetime = Field(default_factory=utcnow)


class AuditEvent(SQLModel, table=True):
    """An append-only, hash-chained audit row."""

    __tablename__ = "audit_event"
    seq: int = Field(primary_key=True)
    at: datetime = Field(default_factory=utcnow)
    actor: str = Field(max_length=64)
    kind: str = Field(max_length=48, index=True)
    subject: str = Field(default="", max_length=64, index=True)
    trace_id: str = Field(default="", max_length=32, index=True)
    policy_version: str = Field(default="", max_length=32)
    before: str | None = Field(default=None, max_length=24)
    after: str | None = Field(default=None, max_length=24)
    data: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)


class AuditHead(SQLModel, table=True):
    """The chain's tip: serialises appends and detects removal of the newest rows."""

    __tablename__ = "audit_head"
    id: int = Field(default=1, primary_key=True)
    seq: int = 0
    hash: str = Field(default="0" * 64, max_length=64)


class Instance(SQLModel, table=True):
    """A running Warden process (`Lifecycle.owner`) and when it last said it was alive.

    An action `executing` or `undoing` under an owner with no recent heartbeat (or no row at
    all: it crashed, or stopped cleanly and removed its row) was interrupted.
    """

    __tablename__ = "instance"
    owner: str = Field(primary_key=True, max_length=64)
    started_at: datetime = Field(default_factory=utcnow)
    heartbeat_at: datetime = Field(default_factory=utcnow, index=True)


class Outbox(SQLModel, table=True):
    """A Slack message Warden owes: a text (`kind` "message") or "bring this action's card to
    its current state" (`kind` "card"). Written in the same transaction as the change that
    caused it and delivered by `bot.delivery`, which retries; redelivering a card is harmless.
    """

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_due", "delivered_at", "next_at"),)
    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=16)
    channel: str = Field(default="", max_length=32)
    thread_ts: str | None = Field(default=None, max_length=32)
    text: str = Field(default="", sa_column=Column(Text, nullable=False))
    action_id: str | None = Field(default=None, max_length=32, index=True)
    # The request the message is about, so its sealed personal values can be restored.
    request_id: str | None = Field(default=None, max_length=32, index=True)
    created_at: datetime = Field(default_factory=utcnow)
    next_at: datetime = Field(default_factory=utcnow)
    attempts: int = 0
    owner: str | None = Field(default=None, max_length=64)
    lease_until: datetime | None = None
    delivered_at: datetime | None = None
    last_error: str | None = Field(default=None, max_length=200)


class InboxEntry(SQLModel, table=True):
    """A request from Slack stored before it was acknowledged (`handlers/inbox.py`): an
    event or a slash command, kept as the signed body Slack sent. The replica that stored it
    owns it and hands it to Bolt; one whose owner died is taken over. `key` (the event id, or
    the command's trigger id) makes a retried or replayed delivery a no-op at the door."""

    __tablename__ = "inbox"
    __table_args__ = (Index("ix_inbox_open", "done_at", "lease_until"),)
    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=100, unique=True)
    kind: str = Field(max_length=16)
    content_type: str = Field(default="", max_length=100)
    body: str = Field(default="", sa_column=Column(Text, nullable=False))
    received_at: datetime = Field(default_factory=utcnow, index=True)
    owner: str | None = Field(default=None, max_length=64)
    lease_until: datetime | None = None
    attempts: int = 0
    done_at: datetime | None = None


class JobRun(SQLModel, table=True):
    """One run of a once-per-deployment job for one period (e.g. the audit anchor of a day):
    the replica that inserts the row runs the job; the others find it taken."""

    __tablename__ = "job_run"
    name: str = Field(primary_key=True, max_length=64)
    period: str = Field(primary_key=True, max_length=32)
    owner: str = Field(max_length=64)
    ran_at: datetime = Field(default_factory=utcnow)


class FactKind(StrEnum):
    PROFILE = "profile"  # who someone is: role, team, time zone
    PREFERENCE = "preference"  # how someone (or a channel) wants things done
    DECISION = "decision"  # what was decided, and why
    TASK = "task"  # something under way or to follow up; short-lived


class FactScope(StrEnum):
    USER = "user"  # scope_id: a Slack user id
    CHANNEL = "channel"  # scope_id: a Slack channel id
    WORKSPACE = "workspace"  # scope_id: ""


class FactSource(StrEnum):
    PERSON = "person"  # someone said it
    OUTCOME = "outcome"  # Warden saw it happen (author "warden")


CURRENT_SLOT = "valid_to IS NULL AND slot IS NOT NULL"
"""The rows `uq_fact_current_slot` covers: at most one current fact per slot."""


class Fact(SQLModel, table=True):
    """One remembered fact: what is true about `subject` in a scope, since when, and who said so.

    A fact with a `slot` states one thing about its subject ("payments-db" / "owner"): a newer
    fact for the same (scope, scope_id, subject, slot) closes it (`valid_to`, `superseded_by`)
    and nothing is deleted; a partial unique index keeps one current fact per slot. A fact with
    no slot (decisions) never replaces another. Expired facts (`expires_at`) are filtered out
    and purged later; a forgotten fact is deleted with its full-text entry. Full-text search
    uses an FTS5 table `fact_fts` (SQLite) or a generated `tsv` column (PostgreSQL), both
    created by migration 0004 and deliberately not part of this model.
    """

    __tablename__ = "fact"
    __table_args__ = (
        Index("ix_fact_scope_recent", "scope", "scope_id", "valid_from"),
        Index("ix_fact_scope_kind", "scope", "scope_id", "kind", "valid_to", "expires_at"),
        Index("ix_fact_subject", "subject", "kind", "valid_from"),
        Index("ix_fact_expires_at", "expires_at"),
        Index("ix_fact_valid_to", "valid_to"),
        Index(
            "uq_fact_current_slot",
            "scope",
            "scope_id",
            "subject",
            "slot",
            unique=True,
            sqlite_where=sql_text(CURRENT_SLOT),
            postgresql_where=sql_text(CURRENT_SLOT),
        ),
        # Ids are typed by people (`/warden forget 42`) and kept in the audit trail: never reuse
        # the id of a forgotten fact (SQLite would, without AUTOINCREMENT).
        {"sqlite_autoincrement": True},
    )
    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=16)
    scope: str = Field(max_length=16)
    scope_id: str = Field(default="", max_length=32)
    subject: str = Field(max_length=64)
    slot: str | None = Field(default=None, max_length=64)
    text: str = Field(sa_column=Column(Text, nullable=False))
    request_id: str | None = Field(default=None, max_length=32)
    channel: str = Field(default="", max_length=32)
    message_ts: str = Field(default="", max_length=32)
    author: str = Field(max_length=32)
    action_id: str | None = Field(default=None, max_length=32)
    source: str = Field(max_length=16)
    valid_from: datetime = Field(default_factory=utcnow)
    valid_to: datetime | None = None
    expires_at: datetime
    superseded_by: int | None = None
    digest: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow)


class TaskStatus(StrEnum):
    OPEN = "open"
    DONE = "done"


class Task(SQLModel, table=True):
    """A to-do kept in a channel: created, assigned and completed by Warden's task tools.

    `action_id` is the action that created it (unique: a retried create finds its row).
    `changed_by_action` is the action that last assigned or completed it — a retried call
    repeats its answer, and an undo reverses only the change its own action made — and
    `previous_assignee` who had it before that assignment. The title is kept in its lasting
    form (personal data as keyed placeholders)."""

    __tablename__ = "task"
    __table_args__ = (
        UniqueConstraint("action_id", name="uq_task_action"),
        Index("ix_task_channel_status", "channel", "status"),
        Index("ix_task_assignee_status", "assignee", "status"),
        Index("ix_task_created_by_status", "created_by", "status"),
        # People type task ids ("complete task 12"): never reuse a deleted one.
        {"sqlite_autoincrement": True},
    )
    id: int | None = Field(default=None, primary_key=True)
    title: str = Field(sa_column=Column(Text, nullable=False))
    channel: str = Field(max_length=32)
    created_by: str = Field(max_length=32)
    assignee: str | None = Field(default=None, max_length=32)
    status: str = Field(default=TaskStatus.OPEN, max_length=16)
    due: date | None = None
    action_id: str = Field(max_length=32)
    changed_by_action: str | None = Field(default=None, max_length=32)
    previous_assignee: str | None = Field(default=None, max_length=32)
    created_at: datetime = Field(default_factory=utcnow)
    completed_at: datetime | None = None
    completed_by: str | None = Field(default=None, max_length=32)


class Reminder(SQLModel, table=True):
    """A message Warden posts to a channel on a schedule: a 5-field cron expression read in
    `timezone` (IANA), or once at `at`. `next_at` (UTC) is the next occurrence, None once a
    one-off has fired; firing one is a conditional update of `next_at` (`fire_reminder`), so
    two replicas post each occurrence once. A cancelled reminder keeps its `next_at`, so
    restoring it is as if it had never been cancelled."""

    __tablename__ = "reminder"
    __table_args__ = (
        UniqueConstraint("action_id", name="uq_reminder_action"),
        Index("ix_reminder_next_at", "next_at"),
        Index("ix_reminder_channel", "channel"),
        {"sqlite_autoincrement": True},
    )
    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=32)
    text: str = Field(sa_column=Column(Text, nullable=False))
    cron: str | None = Field(default=None, max_length=64)
    # Where `cron` is read and times are shown: an IANA name, or "UTC+02:00" for a one-off
    # given with only an offset.
    timezone: str = Field(default="UTC", max_length=64)
    at: datetime | None = None
    next_at: datetime | None = None
    created_by: str = Field(max_length=32)
    action_id: str = Field(max_length=32)
    created_at: datetime = Field(default_factory=utcnow)
    cancelled_at: datetime | None = None
    cancelled_by: str | None = Field(default=None, max_length=32)
    last_fired_at: datetime | None = None
    fired_count: int = 0


class IncidentStatus(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"
    CANCELLED = "cancelled"  # its declaration was undone, or its channel could not be made


class Incident(SQLModel, table=True):
    """An incident Warden declared; its id is its number ("INC-12"), never reused.

    The row is stored before its channel is created, unique on the declaring `action_id`, so
    a retried declaration finds it (and the `channel_name` it chose, kept for good so a
    retry after midnight asks Slack for the same name). `channel` is set once the channel
    exists. `next_reminder_at` is when the lead is next reminded to post a status update:
    claimed by a conditional update (`claim_incident_reminder`), None once it is no longer
    open. `resolved_by_action` is the action that resolved it: only that action's undo
    reopens it. Titles and summaries are kept in their lasting form (personal data as keyed
    placeholders)."""

    __tablename__ = "incident"
    __table_args__ = (
        UniqueConstraint("action_id", name="uq_incident_action"),
        Index("ix_incident_status", "status"),
        Index("ix_incident_next_reminder", "next_reminder_at"),
        Index("ix_incident_channel", "channel"),
        # People type incident numbers ("incident 12"): never reuse a deleted one.
        {"sqlite_autoincrement": True},
    )
    id: int | None = Field(default=None, primary_key=True)
    title: str = Field(sa_column=Column(Text, nullable=False))
    severity: str = Field(max_length=8)
    status: str = Field(default=IncidentStatus.OPEN, max_length=16)
    private: bool = False
    channel_name: str = Field(max_length=80)
    channel: str | None = Field(default=None, max_length=32)
    lead: str = Field(max_length=32)
    comms: str | None = Field(default=None, max_length=32)
    created_by: str = Field(max_length=32)
    action_id: str = Field(max_length=32)
    declared_at: datetime
    resolved_at: datetime | None = None
    resolved_by_action: str | None = Field(default=None, max_length=32)
    summary: str | None = Field(default=None, sa_column=Column(Text))
    last_update_at: datetime
    next_reminder_at: datetime | None = None


class IncidentEvent(SQLModel, table=True):
    """One entry of an incident's timeline: declared, a role or severity change, a status
    update, a note, resolved, reopened, cancelled. Unique on (action_id, kind): a retried
    call finds the entry its first run wrote instead of writing a second (an undo writes its
    own kind, e.g. `severity_restored`). `text` is in its lasting form."""

    __tablename__ = "incident_event"
    __table_args__ = (
        UniqueConstraint("action_id", "kind", name="uq_incident_event_action_kind"),
        Index("ix_incident_event_incident_at", "incident_id", "at"),
        {"sqlite_autoincrement": True},
    )
    id: int | None = Field(default=None, primary_key=True)
    incident_id: int = Field(foreign_key="incident.id")
    at: datetime
    kind: str = Field(max_length=24)
    author: str = Field(max_length=32)
    text: str = Field(sa_column=Column(Text, nullable=False))
    action_id: str | None = Field(default=None, max_length=32)
