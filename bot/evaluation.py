"""Evaluation: scenario and injection suites run through the production path, nothing executed.

A suite is a TOML file (`[suite]` with `name` and `policy`, then `[[case]]` tables; see the
README's "Evaluations") or a Python module whose `cases()` returns case dicts in the same
format. Each case runs in a Warden of its own — the real `Lifecycle` (`bot.app.build`) on a
throwaway SQLite database, with a chat that only records — exactly as a Slack mention would:

    memory facts   stored through the Store (`remember`), before the request
    history        earlier messages in the thread, stored as the thread's earlier requests
                   (and Warden's answers to them)
    request        accepted by `Intake.receive` as an `app_mention` (or a DM)
    planning       the planner worker: memory recall, personal-data masking, the planner
                   (aliases, then Claude replayed from a cassette or live), taint
    gate           every proposal decided by `Gate.decide` (autonomy overrides, the preview
                   rule, taint, four eyes, confidence), stored as actions
    edit           optionally, a person edits the arguments (`Approvals.edit`, re-gated)

The executor runs in evaluation mode (`Executor(evaluation=…)`): lookups return the case's
`lookups`, no tool code runs. What happened is read back from the store — actions with their
status, tier, required approvals and taint, the request's answer or question, usage and cost
— and the model calls from the cassette server. `pydantic-evals` holds the datasets, runs the
evaluators (one per expectation, each failing with a plain reason) and renders the reports,
with a baseline diff.

The parts: bot/eval_cases.py (the case format, what a case produced, the recording chat),
this module (running cases), bot/eval_checks.py (the evaluators), bot/eval_reports.py (JSON,
JUnit, baselines, thresholds, the policy review).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from pydantic_evals.reporting import EvaluationReport, EvaluationReportAdapter

from bot.app import build, build_registry
from bot.cassettes import CassetteServer, load_cassette, save_cassette, script_content
from bot.core import new_id, new_trace
from bot.errors import ConfigError
from bot.eval_cases import (
    BOT_USER,
    CASE_TIMEOUT_S,
    MODELS,
    WARDEN,
    CaseSpec,
    EditSpec,
    EvalChat,
    HistoryTurn,
    Observed,
    Suite,
    printable,
)
from bot.eval_checks import dataset
from bot.gate_types import GATE
from bot.intake import Incoming
from bot.policy import Policy, load_policy
from bot.redact import redact
from bot.settings import Settings
from storage.db import Database
from storage.models import Action, ActionStatus, Request, RequestStatus

# -- running cases ---------------------------------------------------------------------------


def prompt_hash(policy: Policy, model: str) -> str:
    """What the planner is given besides the request: for Claude the system prompt and tool
    definitions it sends; for the alias planner the policy's aliases."""
    if model == "alias":
        shown: Any = {p: [t.tool_name, dict(t.args)] for p, t in policy.aliases.items()}
    else:
        from bot.claude import system_prompt, tool_specs

        shown = [system_prompt(policy), tool_specs(build_registry(policy))]
    return hashlib.sha256(json.dumps(shown, sort_keys=True).encode()).hexdigest()[:16]


class Runner:
    """Runs cases under one policy and one model, each in a Warden of its own."""

    def __init__(
        self,
        settings: Settings,
        policy: Policy,
        *,
        model: str = "alias",
        record: bool = False,
        workdir: Path | None = None,
    ) -> None:
        if model not in MODELS:
            raise ConfigError(f"--model must be one of {', '.join(MODELS)}")
        if model == "live" and settings.anthropic_api_key is None:
            raise ConfigError("--model live needs ANTHROPIC_API_KEY")
        if record and model != "live":
            raise ConfigError("--record needs --model live")
        self.settings = settings
        self.policy = policy
        self.model = model
        self.record = record
        self._own_dir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="warden-eval-"))
        self._template: Path | None = None
        self._lock = threading.Lock()
        self._count = 0

    def close(self) -> None:
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _database(self) -> str:
        """A fresh database for one case: a copy of one migrated once."""
        with self._lock:
            if self._template is None:
                template = self.workdir / "template.db"
                db = Database(f"sqlite:///{template}")
                try:
                    db.upgrade()
                finally:
                    db.dispose()
                with sqlite3.connect(template) as conn:
                    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                conn.close()
                self._template = template
            self._count += 1
            path = self.workdir / f"case-{self._count}.db"
        shutil.copyfile(self._template, path)
        return f"sqlite:///{path}"

    @contextmanager
    def _model(self, suite: Suite, case: CaseSpec) -> Iterator[CassetteServer | None]:
        if case.script is not None:
            turns = [script_content(t.model_dump(), i) for i, t in enumerate(case.script)]
            with CassetteServer(script=turns) as scripted:
                yield scripted
            return
        if self.model == "alias":
            yield None
            return
        if self.model == "replay":
            path = suite.cassette_path(case)
            server = CassetteServer(load_cassette(path) if path.is_file() else [])
            with server:
                yield server
            if server.problem and not path.is_file():
                server.problem = (
                    f"no cassette for this case ({path}); record one with --model live --record"
                )
            return
        upstream = self.settings.anthropic_base_url or "https://api.anthropic.com"
        server = CassetteServer([], upstream=upstream)
        with server:
            yield server
        if self.record and server.interactions:
            save_cassette(suite.cassette_path(case), list(server.interactions))

    def _settings(self, database_url: str, server: CassetteServer | None) -> Settings:
        update: dict[str, Any] = {"database_url": database_url}
        if server is None:
            update["anthropic_api_key"] = None
        else:
            update["anthropic_base_url"] = server.url
            if server.script is not None:
                update["anthropic_api_key"] = SecretStr("a-scripted-model")
            elif self.model == "replay":
                update["anthropic_api_key"] = SecretStr("replayed-from-a-cassette")
        return self.settings.model_copy(update=update)

    def run(self, suite: Suite, case: CaseSpec) -> Observed:
        with self._model(suite, case) as server:
            observed = self._run(case, server)
        if server is not None:
            observed.steps = server.steps
            observed.proposed = sorted({*observed.proposed, *server.tool_uses})
            if server.problem:
                observed.problem = server.problem
                observed.outcome = "error"
        return observed

    def _run(self, case: CaseSpec, server: CassetteServer | None) -> Observed:
        settings = self._settings(self._database(), server)
        chat = EvalChat()
        w = build(
            settings,
            policy=self.policy,
            chat=chat,
            upgrade=False,  # a copy of a database migrated once
            evaluation=dict(case.lookups),
        )
        try:
            observed = _play(w, case)
            with chat._lock:
                posted = sorted({str(p["channel"]) for p in chat.posts})
            return observed.model_copy(update={"posted_to": posted})
        finally:
            w.workers.shutdown(wait=True)
            w.lifecycle.stop()
            w.db.dispose()


def _play(w: Any, case: CaseSpec) -> Observed:
    """One case through the production path (see the module's docstring)."""
    lifecycle = w.lifecycle
    core = lifecycle.core
    channel, requester = case.where, case.requester
    clock = 0

    def ts() -> str:
        nonlocal clock
        clock += 1
        return f"1700000000.{clock:06d}"

    for fact in case.memory:
        scope_id = fact.scope_id
        if scope_id is None:
            scope_id = {"user": requester, "channel": channel, "workspace": ""}[fact.scope]
        w.store.remember(
            kind=fact.kind,
            scope=fact.scope,
            scope_id=scope_id,
            subject=fact.subject,
            slot=fact.slot,
            text=fact.text,
            author=fact.author,
            source="outcome" if fact.author == WARDEN else "person",
            expires_at=core.clock() + core.policy.memory.expiry.of(fact.kind),
            channel=channel,
        )
    root = _history(w, case, ts) if case.history else None
    message_ts = ts()
    lifecycle.intake.receive(
        Incoming(
            event_id=f"EvEVAL{new_id()[:12]}",
            channel=channel,
            user=requester,
            text=case.request if case.dm else f"<@{BOT_USER}> {case.request}",
            ts=message_ts,
            thread_ts=root,
            mention=not case.dm,
            is_dm=case.dm,
        )
    )
    if not w.workers.wait_idle(CASE_TIMEOUT_S):
        return Observed(outcome="error", problem="the case did not finish in time")
    req = w.store.latest_request_in_thread(channel, root or message_ts)
    if req is None or req.message_ts != message_ts:
        return Observed(outcome="error", problem="intake did not accept the request")
    actions = w.store.actions_for_request(req.id)
    edit_refused = None
    if case.edit is not None:
        edit_refused = _edit(w, case.edit, actions)
        actions = w.store.actions_for_request(req.id)
        req = w.store.get_request(req.id) or req
    return _observe(w, case, req, actions, edit_refused)


def _history(w: Any, case: CaseSpec, ts: Any) -> str:
    """Store the case's thread history as the thread's earlier requests (each person's
    message masked as intake masks it) and Warden's answers to them. Returns the thread."""
    core = w.lifecycle.core
    channel = case.where
    turns: list[tuple[HistoryTurn, list[str]]] = []
    for turn in case.history:
        if turn.author == WARDEN:
            if not turns:
                raise ConfigError(f"case {case.name!r}: history starts with a Warden turn")
            turns[-1][1].append(turn.text)
        else:
            turns.append((turn, []))
    root = ""
    for turn, answers in turns:
        at = ts()
        root = root or at
        masker = core.privacy.masker()
        request = Request(
            id=new_id(),
            trace_id=new_trace(),
            event_id=f"EvHIST{new_id()[:12]}",
            channel=channel,
            thread_ts=root,
            message_ts=at,
            requester=turn.author,
            text=masker.mask(redact(turn.text)),
            pii_sealed=core.privacy.seal(masker),
        )
        w.store.accept_request(request, 1_000_000)
        lease = core.clock() + timedelta(minutes=5)
        w.store.claim_request(request.id, core.owner, lease, core.policy.version)
        w.store.finish_planning(
            request.id,
            core.owner,
            RequestStatus.DONE,
            answer="\n".join(answers) or None,
            audit_=core.audit(WARDEN, "request.done", request.trace_id),
        )
    return root


def _edit(w: Any, edit: EditSpec, actions: list[Action]) -> str | None:
    """A person edits the waiting action's arguments; the refusal's reason, if any."""
    lifecycle = w.lifecycle
    waiting = [a for a in actions if a.status == ActionStatus.AWAITING_APPROVAL]
    if not waiting:
        return "there was no waiting card to edit"
    action = waiting[0]
    args = {**lifecycle.core.privacy.real_args(action), **edit.args}
    reply = lifecycle.approvals.edit(action.id, action.revision, edit.by, args)
    w.workers.wait_idle(CASE_TIMEOUT_S)
    if isinstance(reply, dict):
        return "; ".join(f"{k}: {v}" if k != "_" else str(v) for k, v in reply.items())
    if not reply.ok:
        return reply.text or "the edit was refused"
    return None


def _outcome(action: Action) -> str:
    if action.status == ActionStatus.REFUSED:
        return "refuse"
    if action.status == ActionStatus.SUGGESTED:
        return "suggest"
    if action.status == ActionStatus.AWAITING_APPROVAL:
        return "card"
    if action.decided_by == GATE:
        return "run"
    return str(action.status)


def _observe(
    w: Any, case: CaseSpec, req: Request, actions: list[Action], edit_refused: str | None
) -> Observed:
    core = w.lifecycle.core
    spent = Observed(
        outcome="",
        cost_usd=float(req.cost_usd),
        tokens=req.input_tokens
        + req.output_tokens
        + req.cache_read_tokens
        + req.cache_write_tokens,
        proposed=sorted({a.tool for a in actions}),
        ran=sorted({a.tool for a in actions if _outcome(a) == "run"}),
    )
    if not actions:
        detail = printable(req.answer or "")
        if req.status == RequestStatus.FAILED:
            return spent.model_copy(
                update={"outcome": "error", "detail": detail, "problem": detail}
            )
        outcome = "clarify" if req.status == RequestStatus.PLANNED else "answer"
        return spent.model_copy(update={"outcome": outcome, "detail": detail})
    wanted = case.expect.tool
    action = next((a for a in actions if a.tool == wanted), actions[0])
    outcome = _outcome(action)
    approvers: list[str] = []
    if outcome == "card":
        eligible = set(core.gate.approvers(action.tool, action.requester, action.channel))
        approvers = sorted(eligible - core.gate.excluded(action))
    try:
        args = dict(core.privacy.real_args(action))
    except Exception:
        args = json.loads(action.args_json)
    detail = printable(action.status_note or action.rationale or "")
    if edit_refused is not None and case.edit is not None:
        outcome, detail = "refuse", printable(f"the edit was refused: {edit_refused}")
    return spent.model_copy(
        update={
            "outcome": outcome,
            "tool": action.tool,
            "args": args,
            "tier": action.risk,
            "approvers": approvers,
            "approvals": action.required_approvals,
            "taint": action.taint is not None,
            "taint_sources": action.taint,
            "detail": detail,
        }
    )


# -- results ---------------------------------------------------------------------------------


@dataclass(kw_only=True)
class CaseResult:
    name: str
    passed: bool
    reasons: list[str]
    observed: Observed | None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "passed": self.passed,
            "reasons": self.reasons,
            "error": self.error,
            "observed": self.observed.model_dump() if self.observed else None,
        }


@dataclass(kw_only=True)
class SuiteResult:
    suite: Suite
    policy_file: str
    policy_version: str
    prompt_hash: str
    model: str
    cases: list[CaseResult]
    report: EvaluationReport[CaseSpec, Observed, None] = field(repr=False)

    @property
    def passed(self) -> int:
        return sum(c.passed for c in self.cases)

    @property
    def pass_rate(self) -> float:
        return self.passed / len(self.cases) if self.cases else 1.0

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.suite.name,
            "source": self.suite.source,
            "policy": self.policy_file,
            "policy_version": self.policy_version,
            "prompt_hash": self.prompt_hash,
            "model": self.model,
            "passed": self.passed,
            "total": len(self.cases),
            "pass_rate": self.pass_rate,
            "cases": [c.to_json() for c in self.cases],
            "report": EvaluationReportAdapter.dump_python(self.report, mode="json"),
        }


def policy_for(suite: Suite, override: str | Path | None, settings: Settings) -> Path:
    return Path(override) if override else suite.policy or Path(settings.warden_config)


def run_suite(
    suite: Suite,
    settings: Settings,
    *,
    policy_file: str | Path | None = None,
    model: str = "alias",
    record: bool = False,
    concurrency: int = 4,
) -> SuiteResult:
    """Every case of `suite` through the production path; the evaluators' verdicts."""
    path = policy_for(suite, policy_file, settings)
    policy = load_policy(path)
    runner = Runner(settings, policy, model=model, record=record)
    try:
        report = dataset(suite).evaluate_sync(
            lambda case: runner.run(suite, case),
            name=suite.name,
            max_concurrency=max(1, concurrency),
            progress=False,
            task_name="warden",
            metadata={"policy_version": policy.version, "model": model},
        )
    finally:
        runner.close()
    by_name = {c.name: c for c in report.cases}
    failed = {f.name: f for f in report.failures}
    results: list[CaseResult] = []
    for case in suite.cases:
        if case.name in failed:
            message = failed[case.name].error_message
            results.append(
                CaseResult(
                    name=case.name,
                    passed=False,
                    reasons=[f"error: {message}"],
                    observed=None,
                    error=message,
                )
            )
            continue
        rc = by_name[case.name]
        reasons = [f"{n}: {a.reason}" for n, a in rc.assertions.items() if not a.value]
        reasons += [f"{f.name}: {f.error_message}" for f in rc.evaluator_failures]
        out = rc.output
        results.append(
            CaseResult(
                name=case.name,
                passed=not reasons,
                reasons=reasons,
                observed=out,
                error=out.problem if out.outcome == "error" else None,
            )
        )
    return SuiteResult(
        suite=suite,
        policy_file=str(path),
        policy_version=policy.version,
        prompt_hash=prompt_hash(policy, model),
        model=model if model == "alias" else f"{model} ({settings.warden_model})",
        cases=results,
        report=report,
    )
