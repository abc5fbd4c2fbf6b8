"""Runbooks: operator-defined commands from `warden.toml`, turned into tools.

Commands run as argv lists, never through a shell. Each `{param}` is validated against its
`pattern` (full match) or `choices` before substitution, and a value may never start with
"-" unless it is one of the declared choices, so a loose pattern cannot smuggle in an option.
Output is captured with a bounded buffer (head and tail kept) and the process group is killed
on timeout. The action id is passed to the command as `WARDEN_ACTION_ID`, its idempotency key.

A run the executor watches (`LIVE_RUN`, set for an action's run only) also feeds its output to
a `LiveRun` as it arrives — its last lines are what the card shows while it runs — and obeys
its stop switch (Cancel): SIGTERM to the whole process group, then SIGKILL after
`LiveRun.grace_s` for whatever is left.

A command does not inherit Warden's environment (which holds the Slack, Anthropic and
database credentials): it gets `BASE_ENV` from it, the variables its `pass_env` names, its
own `env` table and the `WARDEN_*` values Warden sets, and nothing else.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

from bot.errors import ToolFailed
from bot.policy_runbooks import Param, Runbook
from bot.policy_types import PLACEHOLDER, Risk
from bot.tools import Tool, ToolContext, ToolResult

OUTPUT_KEEP = 16_000  # characters kept from each end of a command's output
LIVE_KEEP = 8_000  # characters of a live run's latest output kept in memory
LIVE_LINES, LIVE_CHARS = 10, 1500  # what a running card shows: the last lines, bounded
STOP_GRACE_S = 5.0  # after SIGTERM, how long a cancelled command may take to stop
POLL_S = 0.1  # how often a watched run looks at its stop switch
# The only variables a runbook inherits from Warden's environment unless it names more.
BASE_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "USER", "LOGNAME", "TMPDIR")


class RunbookArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _field_validator(name: str, spec: Param) -> Any:
    regex = re.compile(spec.pattern) if spec.pattern is not None else None
    choices = set(spec.choices or [])

    def check(cls: Any, value: str) -> str:
        if "\x00" in value or "\n" in value:
            raise ValueError("must be a single line of text")
        if choices:
            if value not in choices:
                raise ValueError(f"must be one of: {', '.join(sorted(choices))}")
            return value
        if value.startswith("-"):
            raise ValueError("must not start with '-'")
        if regex is None or not regex.fullmatch(value):
            raise ValueError(f"does not match the allowed pattern {spec.pattern}")
        return value

    return field_validator(name)(classmethod(check))


def args_model(name: str, runbook: Runbook) -> type[RunbookArgs]:
    """A pydantic model for one runbook's parameters."""
    fields: dict[str, Any] = {
        p: (
            str,
            Field(
                description=spec.description or None,
                max_length=200,
                # For the JSON schema the planner sees; the validator below is what enforces.
                json_schema_extra=(
                    {"enum": list(spec.choices)} if spec.choices else {"pattern": spec.pattern}
                ),
            ),
        )
        for p, spec in runbook.params.items()
    }
    validators = {f"check_{p}": _field_validator(p, spec) for p, spec in runbook.params.items()}
    model = create_model(f"{name}_args", __base__=RunbookArgs, __validators__=validators, **fields)
    return model


def substitute(argv: list[str], values: dict[str, str]) -> list[str]:
    """Fill `{param}` placeholders inside argv elements; never splits or joins elements."""
    return [PLACEHOLDER.sub(lambda m: values[m.group(1)], part) for part in argv]


def truncate_middle(text: str, keep: int = OUTPUT_KEEP) -> str:
    if len(text) <= 2 * keep:
        return text
    cut = len(text) - 2 * keep
    return f"{text[:keep]}\n… [{cut} characters cut] …\n{text[-keep:]}"


def child_env(
    warden: Mapping[str, str],
    own: Mapping[str, str] | None = None,
    pass_env: Iterable[str] = (),
) -> dict[str, str]:
    """The whole environment of a runbook process: `BASE_ENV` and the `pass_env` names taken
    from Warden's environment (when set), then the runbook's own `env`, then `warden`
    (the `WARDEN_*` values), which nothing can override."""
    env = {name: os.environ[name] for name in (*BASE_ENV, *pass_env) if name in os.environ}
    env.update(own or {})
    env.update(warden)
    return env


class LiveRun:
    """A running command's latest output and its stop switch, shared by the thread running it
    (`run_argv`, which feeds and obeys it) and the executor watching it (which reads the
    output for the card and pulls the switch when someone clicks Cancel). Thread-safe."""

    def __init__(self, grace_s: float = STOP_GRACE_S) -> None:
        self.grace_s = grace_s
        self._lock = threading.Lock()
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._tail = ""
        self._stop = threading.Event()
        # Set by `run_argv` once it has signalled the process group because of the switch:
        # the run was cut short by a person, whatever its exit status says.
        self.stopped = False

    def feed(self, chunk: bytes) -> None:
        text = self._decoder.decode(chunk)
        with self._lock:
            self._tail = (self._tail + text)[-LIVE_KEEP:]

    def last_lines(self, lines: int = LIVE_LINES, chars: int = LIVE_CHARS) -> str:
        """The last `lines` lines of output so far, at most `chars` characters (a progress
        bar's carriage returns count as line ends)."""
        with self._lock:
            tail = self._tail
        kept = [ln for ln in tail.replace("\r", "\n").split("\n") if ln.strip()][-lines:]
        return "\n".join(kept)[-chars:]

    def stop(self) -> None:
        """Pull the stop switch: the command is stopped at its next look (within `POLL_S`)."""
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()


LIVE_RUN: ContextVar[LiveRun | None] = ContextVar("warden_live_run", default=None)
"""The live run of the command about to start on this thread (set by the executor for an
action's run; None for undo, dry runs, checks and lookups, which are neither shown live nor
cancelled)."""


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _wait(
    proc: subprocess.Popen[bytes], timeout_s: float, live: LiveRun | None
) -> tuple[int, bool]:
    """Wait for the command: (exit status, timed out). A timeout kills the process group. A
    pulled stop switch sends the group SIGTERM, then SIGKILL once the command has ended (to
    whatever of its group is left) or after the grace period, whichever comes first."""
    if live is None:
        try:
            return proc.wait(timeout=timeout_s), False
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            return proc.wait(), True
    deadline = time.monotonic() + timeout_s
    kill_at: float | None = None
    while True:
        now = time.monotonic()
        step = min(POLL_S, deadline - now)
        if kill_at is not None:
            step = min(step, kill_at - now)
        try:
            code = proc.wait(timeout=max(step, 0.0))
        except subprocess.TimeoutExpired:
            pass
        else:
            if kill_at is not None:
                # Stopped: nothing of the group outlives the command (children orphaned by
                # it would run on unwatched).
                _signal_group(proc.pid, signal.SIGKILL)
            return code, False
        now = time.monotonic()
        if now >= deadline:
            _signal_group(proc.pid, signal.SIGKILL)
            return proc.wait(), True
        if kill_at is None and live.stop_requested and proc.poll() is None:
            live.stopped = True
            _signal_group(proc.pid, signal.SIGTERM)
            kill_at = now + live.grace_s
        elif kill_at is not None and now >= kill_at:
            _signal_group(proc.pid, signal.SIGKILL)
            return proc.wait(), False


def run_argv(argv: list[str], timeout_s: float, env: Mapping[str, str]) -> ToolResult:
    """Run a command (no shell) with exactly `env` (see `child_env`), capture bounded output,
    kill its process group on timeout. Under a `LIVE_RUN`, output also goes to it as it
    arrives and its stop switch stops the command (the result is then "stopped")."""
    live = LIVE_RUN.get()
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    except OSError as exc:
        return ToolResult(ok=False, output=f"could not start {argv[0]!r}: {exc.strerror or exc}")
    head: list[bytes] = []
    tail = bytearray()
    size = 0
    limit = OUTPUT_KEEP * 4

    def drain() -> None:
        nonlocal size
        stream = proc.stdout
        assert stream is not None
        for chunk in iter(lambda: os.read(stream.fileno(), 65536), b""):
            if size < limit:
                head.append(chunk[: limit - size])
            tail.extend(chunk)
            del tail[: max(0, len(tail) - limit)]
            size += len(chunk)
            if live is not None:
                live.feed(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    code, timed_out = _wait(proc, timeout_s, live)
    reader.join(timeout=5)
    if proc.stdout is not None:
        proc.stdout.close()
    first = b"".join(head)
    raw = first if size <= limit else first + b"\n" + bytes(tail)
    if size > 2 * limit:
        raw = first + f"\n… [{size - 2 * limit} bytes cut] …\n".encode() + bytes(tail)
    output = truncate_middle(raw.decode("utf-8", errors="replace"))
    if live is not None and live.stopped:
        how = f"exit status {code}" if code >= 0 else _signal_name(-code)
        return ToolResult(
            ok=False, output=f"stopped by a cancel ({how})\n{output}".strip(), unknown=True
        )
    if timed_out:
        return ToolResult(
            ok=False, output=f"timed out after {timeout_s:g}s\n{output}".strip(), unknown=True
        )
    if code != 0:
        return ToolResult(ok=False, output=f"exit status {code}\n{output}".strip())
    return ToolResult(ok=True, output=output)


def _values(args: BaseModel) -> dict[str, str]:
    return {k: str(v) for k, v in args.model_dump().items()}


def _env(runbook: Runbook, ctx: ToolContext, **extra: str) -> dict[str, str]:
    warden = {
        "WARDEN_ACTION_ID": ctx.action_id,
        "WARDEN_TRACE_ID": ctx.trace_id,
        "WARDEN_REQUESTER": ctx.requester,
        **extra,
    }
    return child_env(warden, runbook.env, runbook.pass_env)


def verify_runner(runbook: Runbook) -> Callable[[BaseModel, ToolContext], ToolResult] | None:
    """A runbook's outcome check (`verify`), called like its command: the same `{param}`
    values and environment (plus `WARDEN_VERIFY=1`) and timeout; exit status 0 means the
    outcome is good. None if the runbook declares no check."""
    argv = runbook.verify
    if argv is None:
        return None
    timeout_s = runbook.timeout.total_seconds()

    def verify(args: BaseModel, ctx: ToolContext) -> ToolResult:
        return run_argv(
            substitute(argv, _values(args)), timeout_s, _env(runbook, ctx, WARDEN_VERIFY="1")
        )

    return verify


def runbook_tool(name: str, runbook: Runbook) -> Tool[Any]:
    """Build the tool for one `[runbooks.NAME]` entry."""
    model = args_model(name, runbook)
    timeout_s = runbook.timeout.total_seconds()
    values = _values

    def env(ctx: ToolContext, **extra: str) -> dict[str, str]:
        return _env(runbook, ctx, **extra)

    def run(args: BaseModel, ctx: ToolContext) -> ToolResult:
        return run_argv(substitute(runbook.command, values(args)), timeout_s, env(ctx))

    def undo(args: BaseModel, ctx: ToolContext, _data: dict[str, Any]) -> ToolResult:
        assert runbook.undo is not None
        return run_argv(
            substitute(runbook.undo, values(args)), timeout_s, env(ctx, WARDEN_UNDO="1")
        )

    def dry_run(args: BaseModel, ctx: ToolContext) -> str:
        assert runbook.dry_run is not None
        result = run_argv(
            substitute(runbook.dry_run, values(args)),
            min(timeout_s, 30),
            env(ctx, WARDEN_DRY_RUN="1"),
        )
        if not result.ok:
            raise ToolFailed(result.output)
        return result.output

    def raised(args: BaseModel) -> Risk:
        risk = Risk.LOW
        for p, spec in runbook.params.items():
            bump = spec.risk_if.get(str(getattr(args, p)))
            if bump is not None:
                risk = risk.at_least(bump)
        return risk

    has_raise = any(spec.risk_if for spec in runbook.params.values())
    return Tool(
        name=name,
        description=runbook.description,
        args=model,
        run=run,
        risk=runbook.risk,
        risk_from_args=raised if has_raise else None,
        dry_run=dry_run if runbook.dry_run else None,
        undo=undo if runbook.undo else None,
        read_only=runbook.read_only,
        timeout_s=timeout_s,
        source="runbook",
    )


def command_preview(runbook: Runbook, args: dict[str, str]) -> str:
    """The exact argv that will run, shown on the card."""
    import shlex

    return shlex.join(substitute(runbook.command, args))
