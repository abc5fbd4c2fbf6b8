"""Warden's tables, all in one place (sqlmodel).

Requests are what people asked; actions are the tool calls planned for them and carry the
lifecycle; approvals bind an approver to one exact revision of an action; `control` is the
kill switch; audit rows form a hash chain whose head lives in `audit_head`; `instance` lists
the running Warden processes and their heartbeats. `control` and `audit_head` are single rows
seeded by the migrations, so no writer ever has to create them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


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
    """Seen Slack `event_id`s: retries of the same event never make a second request."""

    __tablename__ = "slack_event"
    event_id: str = Field(primary_key=True, max_length=64)
    received_at: datetime = Field(default_factory=utcnow, index=True)


class Request(SQLModel, table=True):
    __tablename__ = "request"
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
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class Action(SQLModel, table=True):
    __tablename__ = "action"
    __table_args__ = (Index("ix_action_status_expires", "status", "expires_at"),)
    id: str = Field(primary_key=True, max_length=32)
    request_id: str = Field(foreign_key="request.id", max_length=32, index=True)
    trace_id: str = Field(max_length=32)
    tool: str = Field(max_length=64)
    args_json: str = Field(sa_column=Column(Text, nullable=False))
    policy_version: str = Field(max_length=32)
    revision: int = 1
    risk: str = Field(max_length=16)
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
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


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
    created_at: datetime = Field(default_factory=utcnow)


class Control(SQLModel, table=True):
    """The kill switch: a single row (id 1)."""

    __tablename__ = "control"
    id: int = Field(default=1, primary_key=True)
    paused: bool = False
    reason: str = Field(default="", sa_column=Column(Text, nullable=False))
    changed_by: str = Field(default="", max_length=32)
    changed_at: datetime = Field(default_factory=utcnow)


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
