"""Benchmark: does Slack's ack stay fast under real load, next to a bare Bolt app?

Run on demand (`make bench`, or `python bench/ack_latency.py [--db sqlite|postgresql|both]
[--quick]`); not part of the test suite. Writes bench/results.json; see bench/README.md.

For each database, two servers are measured with the same request shapes, one after the
other, over HTTP on 127.0.0.1, every request signed as Slack signs it:

* bare Bolt (bench/bare_bolt.py), in its own process: a sync slack-bolt App
  (process_before_response=True) served by waitress with Warden's thread count, whose
  listeners do one INSERT each and ack — the floor;
* Warden: `warden serve` in its own process, as deployed, against a devslack Workspace (the
  Slack Web API, in this process) and a stub of Anthropic's API that answers after 2 s (a slow
  LLM; requests starting "slowly" match no alias), 100 mentions waiting on it, four runbooks
  running. The bench reads Warden's progress from its database.

Shapes: a burst of 80 requests released at once by a barrier (50 app_mention events and 30
slash commands: /pause, /resume, /warden status), repeated; a flood of 1,000 mentions from
one user at concurrency 64, during which another user's mention is timed until its card is
posted (fairness); and, for Warden only, Approve click → runbook process started.
The HTTP round trip of each request is what Slack's ack waits for (3 s timeout).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import logging
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, text

from bench.bare_bolt import HTTP_THREADS
from devslack import Delivery, Persona, Workspace
from storage.db import Database, normalise_url

PLAN_SECONDS = 2.0
STAND_IN_NICE = 10
"""Slack's and Anthropic's stand-ins run on other machines in a deployment; here they share
the two cores with the server under test, so their threads run at this niceness (as Warden's
worker does): they still answer whenever a core is free, and do not take one from the
server whose acks are timed. The same for bare Bolt and Warden."""
SECRET, TOKEN = "bench-secret", "xoxb-bench"
CHANNEL, OPS = "C0GENERAL", "C0OPS"
REQ, APPR, ADMIN, FLOODER, OTHER = "U0REQ", "U0APPR", "U0ADMIN", "U0FLOOD", "U0OTHER"
# Many people use Warden at once: the waiting requests and the bursts come from a team (each
# person may have `workers.per_requester` requests in flight); the flood is one person.
TEAM = tuple(f"U0T{i:03d}" for i in range(100))
SLOW_ACK_MS = 3000.0  # Slack gives up on an ack after 3 s (and retries the event)
DEFAULT_PG = os.environ.get(
    "WARDEN_BENCH_PG_URL",
    os.environ.get("WARDEN_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test"),
)


@dataclass(frozen=True)
class Sizes:
    """How much load each phase sends (`--quick` shrinks everything)."""

    waiting: int = 100  # mentions left waiting on the 2 s planner
    burst_mentions: int = 50
    burst_slash: int = 30
    bursts: int = 3
    flood: int = 1000
    flood_concurrency: int = 64
    clicks: int = 30
    fairness_cap_s: float = 240.0  # give up waiting for the other user's card after this
    busy_seconds: int = 40  # runbooks kept running while the bursts are timed


QUICK = Sizes(
    waiting=20,
    burst_mentions=10,
    burst_slash=6,
    bursts=1,
    flood=100,
    flood_concurrency=16,
    clicks=5,
    fairness_cap_s=40.0,
    busy_seconds=15,
)


class TimedWorkspace(Workspace):
    """A Workspace that remembers, per thread, the HTTP round trip of its last delivery
    (only the POST to the bot, not building or signing the request)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._last = threading.local()
        self.captured: list[tuple[bytes, dict[str, str]]] | None = None

    def raw_post(self, body: bytes, headers: dict[str, str]) -> Delivery:
        if self.captured is not None:  # preparing load for bench/fire.py: sign, don't send
            self.captured.append((body, headers))
            return Delivery(status=200, body="", raw=body, headers=headers)
        t0 = time.perf_counter()
        delivery = super().raw_post(body, headers)
        self._last.ms = (time.perf_counter() - t0) * 1000
        return delivery

    def last_ms(self) -> float:
        return float(self._last.ms)


# -- statistics -------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50": round(statistics.median(values), 2),
        "p90": round(pct(values, 0.90), 2),
        "p99": round(pct(values, 0.99), 2),
        "max": round(max(values), 2),
        "over_3s": sum(v > SLOW_ACK_MS for v in values),
    }


# -- load shapes --------------------------------------------------------------------------------


def prepare(ws: TimedWorkspace, jobs: list[tuple[str, Fire]]) -> list[dict[str, Any]]:
    """Build and sign each request as the workspace would send it, without sending."""
    out = []
    for kind, fire in jobs:
        ws.captured = []
        fire()
        ((body, headers),) = ws.captured
        out.append({"kind": kind, "body": base64.b64encode(body).decode(), "headers": headers})
    ws.captured = None
    return out


def fire_elsewhere(
    ws: TimedWorkspace,
    requests: list[dict[str, Any]],
    *,
    together: bool = False,
    concurrency: int = 1,
    halfway: Callable[[], None] | None = None,
) -> list[tuple[str, float, int, float, int]]:
    """Send prepared requests from a separate process (bench/fire.py), so the load generator
    does not share this process's GIL with the server under test."""
    job = {"url": ws.bot_url, "requests": requests, "together": together}
    job["concurrency"] = concurrency
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("fire.py"))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps(job))
    proc.stdin.close()
    probe: threading.Thread | None = None
    result: list[Any] = []
    for line in proc.stdout:
        if line.strip() == "half":
            if halfway is not None:
                probe = threading.Thread(target=halfway, name="bench-fairness", daemon=True)
                probe.start()
        elif line.strip():
            result = json.loads(line)
    proc.wait(timeout=120)
    if probe is not None:
        probe.join()
    return [
        (str(k), float(ms), int(status), float(sent), int(size))
        for k, ms, status, sent, size in result
    ]


Fire = Callable[[], Delivery]


def timed(ws: TimedWorkspace, fire: Fire) -> tuple[float, int]:
    delivery = fire()
    return ws.last_ms(), delivery.status


def slash_commands(n: int) -> list[tuple[str, str, str]]:
    """(user, command, text): /warden status, /pause and /resume, mixed as the old benchmark
    mixed them. The admin pauses and resumes; the status commands come from team members
    other than the burst's mention senders, one each — as people type them. (One person's
    commands are served one at a time ahead of other work, the rest in turn with everyone
    else's: with all 30 from the admin, the answers' p50 was ~1.1–1.4 s.)"""
    out = []
    for i in range(n):
        if i % 3:
            out.append((TEAM[-1 - i], "/warden", "status"))
        else:
            out.append((ADMIN, "/pause", "bench") if i % 2 else (ADMIN, "/resume", ""))
    return out


def burst(
    ws: TimedWorkspace, sizes: Sizes, tag: str, seed: int, word: str = ""
) -> dict[str, list[float]]:
    """`burst_mentions` mentions and `burst_slash` slash commands fired at the same instant
    by one thread each, released together by a barrier."""
    jobs: list[tuple[str, Fire]] = [
        (
            "mention",
            lambda i=i: ws.mention(TEAM[i % len(TEAM)], CHANNEL, f"{word} touch {tag}m{i}".strip()),
        )
        for i in range(sizes.burst_mentions)
    ]
    jobs += [
        ("slash", lambda c=c: ws.slash(c[0], CHANNEL, c[1], c[2], wait=0))
        for c in slash_commands(sizes.burst_slash)
    ]
    random.Random(seed).shuffle(jobs)
    prepared = prepare(ws, jobs)
    done = fire_elsewhere(ws, prepared, together=True)
    out: dict[str, list[float]] = {"mention": [], "slash": [], "errors": [], "answer": []}
    for (kind, ms, status, sent, size), req in zip(done, prepared, strict=True):
        out[kind].append(ms)
        if status != 200:
            out["errors"].append(float(status))
        elif kind == "slash":
            out["answer"].append(ms if size else answer_ms(ws, req, ms, sent))
    return out


def answer_ms(ws: TimedWorkspace, req: dict[str, Any], ack_ms: float, sent: float) -> float:
    """How long the person who typed a slash command waited to see its answer: the ack's
    body when it has one, else the first post to the command's response_url."""
    fields = urllib.parse.parse_qs(base64.b64decode(req["body"]).decode())
    answered = ws.answered_at(fields["response_url"][0], timeout=30)
    return ack_ms if answered is None else (answered - sent) * 1000


def bursts(ws: TimedWorkspace, sizes: Sizes, tag: str, word: str = "") -> dict[str, Any]:
    pooled: dict[str, list[float]] = {"mention": [], "slash": [], "errors": [], "answer": []}
    for b in range(sizes.bursts):
        one = burst(ws, sizes, f"{tag}b{b}", seed=b, word=word)
        for k, v in one.items():
            pooled[k] += v
        time.sleep(0.5)
    every = pooled["mention"] + pooled["slash"]
    return {
        "ack_ms": summary(every),
        "mention_ack_ms": summary(pooled["mention"]),
        "slash_ack_ms": summary(pooled["slash"]),
        "slash_answer_ms": summary(pooled["answer"]),
        "non_200": len(pooled["errors"]),
        "samples_ms": [round(v, 2) for v in every],
    }


def flood(
    ws: TimedWorkspace,
    sizes: Sizes,
    tag: str,
    halfway: Callable[[], None] | None = None,
    word: str = "",
) -> dict[str, Any]:
    """`flood` mentions from one user, `flood_concurrency` in flight; `halfway` runs on its
    own thread once half of them have been acknowledged."""
    jobs: list[tuple[str, Fire]] = [
        ("mention", lambda i=i: ws.mention(FLOODER, CHANNEL, f"{word} touch {tag}f{i}".strip()))
        for i in range(sizes.flood)
    ]
    prepared = prepare(ws, jobs)
    fired = fire_elsewhere(ws, prepared, concurrency=sizes.flood_concurrency, halfway=halfway)
    # From the first request sent to the last ack (not counting the halfway probe's wait).
    wall = max(sent + ms / 1000 for _k, ms, _s, sent, _z in fired) - min(f[3] for f in fired)
    done = [(ms, status) for _kind, ms, status, _sent, _size in fired]
    ms = [d[0] for d in done]
    return {
        "ack_ms": summary(ms),
        "non_200": sum(d[1] != 200 for d in done),
        "seconds": round(wall, 2),
        "acks_per_second": round(len(done) / wall, 1),
    }


# -- py-spy around a phase ----------------------------------------------------------------------


@contextlib.contextmanager
def py_spy(
    out: str | None, name: str, mode: str, rate: int = 100, pid: int | None = None
) -> Iterator[None]:
    """Record this process (or `pid`) with py-spy while the block runs (if `out` is set)."""
    if not out:
        yield
        return
    suffix = Path(out).suffix
    fmt = {".json": "speedscope", ".svg": "flamegraph", ".txt": "raw"}.get(suffix, "speedscope")
    path = f"{out.removesuffix(suffix)}-{name}{suffix or '.json'}"
    exe = Path(sys.executable).with_name("py-spy")  # the venv's, if installed there
    cmd = [
        str(exe) if exe.exists() else "py-spy",
        "record",
        "--pid",
        str(pid or os.getpid()),
        "--rate",
        str(rate),
        "--threads",
    ]
    cmd += ["--format", fmt]
    cmd += ["-o", path, "--nonblocking"] if mode == "nonblocking" else ["-o", path]
    if mode == "idle":
        cmd.append("--idle")
    elif mode == "gil":
        cmd.append("--gil")
    spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.5)  # let it attach
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        try:
            spy.wait(timeout=60)
        except subprocess.TimeoutExpired:
            spy.kill()
        print(f"  py-spy ({mode}) → {path}", flush=True)


# -- databases ----------------------------------------------------------------------------------


def reset_postgres(url: str) -> None:
    engine = create_engine(normalise_url(url))
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


def as_stand_in(start: Callable[[], Any]) -> Any:
    """Call `start` on a thread running at STAND_IN_NICE, so the serving thread it starts,
    and every request thread that one starts, inherit that niceness (Linux: per thread)."""
    out: list[Any] = []

    def run() -> None:
        with contextlib.suppress(OSError):  # not permitted, or not Linux: run as we are
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), STAND_IN_NICE)
        out.append(start())

    thread = threading.Thread(target=run, name="bench-stand-in")
    thread.start()
    thread.join()
    return out[0]


def database_url(db: str, tmp: Path, pg_url: str, name: str) -> str:
    if db == "sqlite":
        return f"sqlite:///{tmp / f'{name}.db'}"
    reset_postgres(pg_url)
    return pg_url


def make_workspace() -> TimedWorkspace:
    ws = TimedWorkspace(
        signing_secret=SECRET,
        bot_url="",
        bot_token=TOKEN,
        team_id="T0B",
        bot_user_id="U0WARDEN",
        personas=[
            Persona(id=REQ, name="req", label="requester"),
            Persona(id=APPR, name="appr", label="approver"),
            Persona(id=ADMIN, name="admin", label="admin"),
            Persona(id=FLOODER, name="flood", label="one busy user"),
            Persona(id=OTHER, name="other", label="another user"),
            *(Persona(id=u, name=u.lower(), label="a teammate") for u in TEAM),
        ],
        channels={CHANNEL: "general", OPS: "ops"},
    )
    as_stand_in(ws.start)
    return ws


# -- the baseline: a bare Bolt app --------------------------------------------------------------


def run_bare(url: str, sizes: Sizes, spy: str | None, spy_mode: str, tag: str) -> dict[str, Any]:
    """bench/bare_bolt.py in its own process: a sync Bolt app whose listeners do one INSERT
    and ack, served like Warden is served."""
    ws = make_workspace()
    bare = ServerProcess(
        [str(Path(__file__).with_name("bare_bolt.py")), url, "{port}"],
        {"DATABASE_URL": url, "SLACK_API_URL": ws.api_url},
        health_path=None,
    )
    ws.bot_url = bare.url + "/slack/events"
    out: dict[str, Any] = {"in_own_process": True}
    db = Database(url)
    try:
        until(lambda: ws.mention(REQ, CHANNEL, "warm up").status == 200, 30, "bare Bolt warm-up")
        with py_spy(spy, f"{tag}-bare-burst", spy_mode, pid=bare.proc.pid):
            out["burst"] = bursts(ws, sizes, "bare")
        out["flood"] = flood(ws, sizes, "bare")
        with db.engine.connect() as conn:
            out["rows_inserted"] = int(conn.execute(text("SELECT count(*) FROM bare_ack")).one()[0])
    finally:
        bare.kill()
        ws.stop()
        db.dispose()
    return out


# -- Warden -------------------------------------------------------------------------------------


def card_posted(ws: Workspace, thread_ts: str, cap_s: float) -> float | None:
    """When (time.time()) the first card (a post with blocks) appeared in `thread_ts`."""
    deadline = time.monotonic() + cap_s
    seen = 0
    while time.monotonic() < deadline:
        calls = ws.calls("chat.postMessage")
        for call in calls[seen:]:
            if call.params.get("thread_ts") == thread_ts and call.params.get("blocks"):
                return call.at
        seen = len(calls)
        time.sleep(0.05)
    return None


# -- Warden in its own process, as deployed ----------------------------------------------------

SLOW_WORD = "slowly"
"""Requests starting with it match no alias: the (stub) model plans them, taking 2 s."""


def policy_file(path: Path, stamp: Path) -> Path:
    """`bench_policy` as the `warden.toml` a deployment would have."""
    path.write_text(
        f"""[access]
admins = ["{ADMIN}"]
approvers = ["{APPR}"]
admin_channel = "{OPS}"

[workers]
planners = 16
executors = 8

[runbooks.busy]
description = "a long-running runbook"
risk = "medium"
command = ["sleep", "{{n}}"]
[runbooks.busy.params.n]
pattern = "^[0-9]{{1,2}}$"

[runbooks.touch]
description = "write the start time"
risk = "medium"
command = ["sh", "-c", 'date +"$0 %s.%N" >> {stamp}', "{{n}}"]
[runbooks.touch.params.n]
pattern = "^[a-z0-9]{{1,20}}$"

[aliases]
"touch {{n}}" = {{ runbook = "touch" }}
"busy {{n}}" = {{ runbook = "busy" }}
"""
    )
    return path


def slow_model() -> Any:
    """A stub of Anthropic's Messages API that answers every request after PLAN_SECONDS by
    proposing `touch` (a slow LLM, in the bench's process: it only sleeps)."""
    from tests.anthropic_stub import AnthropicStub, propose, reply, slow

    stub = AnthropicStub()
    stub.responder = lambda body: slow(
        PLAN_SECONDS, reply(propose("touch", {"n": "model"}, 0.9, "asked to touch"))
    )
    return as_stand_in(stub.start)


SERVE = ["-c", "from handlers.cli import main; raise SystemExit(main())", "serve"]


class ServerProcess:
    """A server under test in its own process (its own GIL), on a free port; "{port}" in
    `args` is replaced by it. Waits until `health_path` answers (or, without one, until the
    port accepts connections)."""

    def __init__(self, args: list[str], env: dict[str, str], health_path: str | None) -> None:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        full = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "ANTHROPIC_"))}
        full.update(SLACK_BOT_TOKEN=TOKEN, SLACK_SIGNING_SECRET=SECRET, PORT=str(self.port))
        full.update(env)
        root = Path(__file__).resolve().parents[1]
        self.proc = subprocess.Popen(
            [sys.executable, *(a.replace("{port}", str(self.port)) for a in args)],
            cwd=root,
            env=full,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: `warden serve` has a worker child
        )
        self.url = f"http://127.0.0.1:{self.port}"
        self.health_path = health_path
        until(lambda: self._healthy(), 60, f"{args[-1]} did not come up")

    def _healthy(self) -> bool:
        import socket
        import urllib.request

        assert self.proc.poll() is None, "the server under test exited"
        try:
            if self.health_path is None:
                socket.create_connection(("127.0.0.1", self.port), timeout=2).close()
            else:
                with urllib.request.urlopen(self.url + self.health_path, timeout=2):
                    pass
            return True
        except OSError:
            return False

    def kill(self) -> None:
        # The whole group (front and worker): the flood's planning backlog is not waited for.
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


def warden_process(url: str, ws: Workspace, config: Path, model_url: str) -> ServerProcess:
    """`warden serve`, as it runs in production."""
    env = {
        "SLACK_API_URL": ws.api_url,
        "DATABASE_URL": url,
        "WARDEN_CONFIG": str(config),
        "ANTHROPIC_API_KEY": "sk-ant-bench",
        "ANTHROPIC_BASE_URL": model_url,
        "WARDEN_LOG_LEVEL": "WARNING",
    }
    return ServerProcess(SERVE, env, health_path="/healthz")


def until(fn: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll state held in another process (its database rows) until it holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(what)


def request_counts(db: Database) -> dict[str, int]:
    from sqlmodel import col, func, select

    from storage.models import InboxEntry, Request

    with db.read() as s:
        counts = {
            str(status): int(n)
            for status, n in s.exec(
                select(Request.status, func.count()).group_by(col(Request.status))
            ).all()
        }
        counts["inbox_open"] = int(
            s.exec(
                select(func.count())
                .select_from(InboxEntry)
                .where(col(InboxEntry.done_at).is_(None))
            ).one()
        )
    return counts


def run_warden(
    url: str, sizes: Sizes, tmp: Path, spy: str | None, spy_mode: str, tag: str
) -> dict[str, Any]:
    from storage.repo import Store

    stamp = tmp / f"started-{tag}.log"
    config = policy_file(tmp / f"warden-{tag}.toml", stamp)
    ws = make_workspace()
    model = slow_model()
    db = Database(url)
    db.upgrade()
    store = Store(db)
    warden = warden_process(url, ws, config, model.url)
    ws.bot_url = warden.url + "/slack/events"
    out: dict[str, Any] = {"http_threads": HTTP_THREADS, "warden_in_own_process": True}

    def counts() -> dict[str, int]:
        return request_counts(db)

    def settled(total: int) -> bool:
        c = counts()
        return c["inbox_open"] == 0 and sum(v for k, v in c.items() if k != "inbox_open") >= total

    try:
        # Runbooks running for the whole burst phase.
        for _ in range(4):
            ws.mention(REQ, CHANNEL, f"busy {sizes.busy_seconds}")
        cards = until(
            lambda: (
                posted[:4]
                if len(
                    posted := [
                        a
                        for a in store.actions_with_status(["awaiting_approval"], 10)
                        if a.card_ts and a.card_ts[0].isdigit()  # posted, not just reserved
                    ]
                )
                >= 4
                else None
            ),
            30,
            "the busy runbooks' cards",
        )
        for action in cards:
            ws.click(APPR, CHANNEL, str(action.card_ts), "warden_approve")
        with ThreadPoolExecutor(20) as pool:
            list(
                pool.map(
                    lambda i: ws.mention(
                        TEAM[i % len(TEAM)], CHANNEL, f"{SLOW_WORD} touch slow{i}"
                    ),
                    range(sizes.waiting),
                )
            )
        until(lambda: settled(4 + sizes.waiting), 60, "the waiting requests were not taken in")
        c = counts()
        out["planner_backlog_when_timing"] = c.get("received", 0) + c.get("planning", 0)
        out["runbooks_running_when_timing"] = len(store.actions_with_status(["executing"]))

        # 1. Bursts while the planners are busy.
        with py_spy(spy, f"{tag}-warden-burst", spy_mode, pid=warden.proc.pid):
            out["burst"] = bursts(ws, sizes, "w", word=SLOW_WORD)
        ws.slash(ADMIN, CHANNEL, "/resume")
        sent = sizes.waiting + sizes.bursts * sizes.burst_mentions
        t0 = time.monotonic()
        try:
            until(
                lambda: counts().get("planned", 0) >= sent + 4,
                sent * PLAN_SECONDS / 16 + 90,
                "planning did not finish",
            )
            out["drained_seconds"] = round(time.monotonic() - t0, 1)
        except AssertionError:
            out["drained_seconds"] = None
        out["requests_sent"] = sent
        out["requests_planned"] = counts().get("planned", 0) - 4  # the busy runbooks' requests

        # 2. Approve click → runbook process started, one at a time.
        click_ms: list[float] = []
        for i in range(sizes.clicks):
            ws.mention(REQ, CHANNEL, f"touch c{i}")
            action = until(
                lambda i=i: next(
                    (
                        a
                        for a in store.actions_with_status(["awaiting_approval"], 500)
                        if f'"c{i}"' in a.args_json and a.card_ts and a.card_ts[0].isdigit()
                    ),
                    None,
                ),
                30,
                "the click's card",
            )
            t0w = time.time()
            ws.click(APPR, CHANNEL, str(action.card_ts), "warden_approve")
            line = until(
                lambda i=i: next(
                    (
                        ln
                        for ln in (stamp.read_text().splitlines() if stamp.exists() else [])
                        if ln.startswith(f"c{i} ")
                    ),
                    None,
                ),
                30,
                "the runbook did not start",
            )
            click_ms.append((float(line.split()[1]) - t0w) * 1000)
        out["approve_to_process_ms"] = summary(click_ms)

        # 3. A flood from one user; halfway through, another user asks for something.
        fairness: dict[str, Any] = {}

        def other_user() -> None:
            c = counts()
            fairness["planner_backlog_at_ask"] = c.get("received", 0) + c.get("planning", 0)
            asked = time.time()
            delivery = ws.mention(OTHER, CHANNEL, f"{SLOW_WORD} touch other")
            fairness["ack_ms"] = round(ws.last_ms(), 2)
            ts = json.loads(delivery.raw)["event"]["ts"]
            at = card_posted(ws, ts, sizes.fairness_cap_s)
            fairness["card_seconds"] = None if at is None else round(at - asked, 2)
            fairness["gave_up_after_s"] = None if at is not None else sizes.fairness_cap_s

        out["flood"] = flood(ws, sizes, "w", halfway=other_user, word=SLOW_WORD)
        out["fairness"] = fairness
    finally:
        warden.kill()
        model.stop()
        ws.stop()
        db.dispose()
    return out


# -- report -------------------------------------------------------------------------------------


def _f(v: Any, unit: str = "") -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.1f}{unit}"
    return f"{v}{unit}"


def _ratio(w: Any, b: Any) -> str:
    if not isinstance(w, int | float) or not isinstance(b, int | float) or b <= 0:
        return "—"
    return f"{w / b:.1f}×"


def rows(r: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    b, w = r["bare"], r["warden"]
    bb, wb, bf, wf = b["burst"], w["burst"], b["flood"], w["flood"]
    n = wb["ack_ms"]["n"]
    out: list[tuple[str, str, str, str, str]] = []

    def lat(figure: str, target: str, bs: dict[str, Any] | None, ws: dict[str, Any], k: str):
        bv = bs.get(k) if bs else None
        out.append((figure, target, _f(bv), _f(ws.get(k)), _ratio(ws.get(k), bv)))

    burst_n = f"{n} acks, {w['planner_backlog_when_timing']} waiting on the planner"
    lat(f"burst ack p50 ms ({burst_n})", "", bb["ack_ms"], wb["ack_ms"], "p50")
    lat("burst ack p99 ms", "≤ 100, ≤ 3× bare", bb["ack_ms"], wb["ack_ms"], "p99")
    lat("burst ack max ms", "", bb["ack_ms"], wb["ack_ms"], "max")
    lat("  mentions p50 ms", "", bb["mention_ack_ms"], wb["mention_ack_ms"], "p50")
    lat("  mentions p99 ms", "", bb["mention_ack_ms"], wb["mention_ack_ms"], "p99")
    lat("  slash p50 ms", "", bb["slash_ack_ms"], wb["slash_ack_ms"], "p50")
    lat("  slash p99 ms", "", bb["slash_ack_ms"], wb["slash_ack_ms"], "p99")
    answer = "slash answer seen p50 ms (ack body, or response_url post)"
    lat(answer, "", bb.get("slash_answer_ms"), wb["slash_answer_ms"], "p50")
    lat("slash answer seen p99 ms", "", bb.get("slash_answer_ms"), wb["slash_answer_ms"], "p99")
    flood_n = f"{wf['ack_ms']['n']} from one user, conc. {r['sizes']['flood_concurrency']}"
    lat(f"flood ack p50 ms ({flood_n})", "", bf["ack_ms"], wf["ack_ms"], "p50")
    lat("flood ack p99 ms", "≤ 100", bf["ack_ms"], wf["ack_ms"], "p99")
    lat("flood ack max ms", "≤ 3000", bf["ack_ms"], wf["ack_ms"], "max")
    lat("flood acks over 3 s", "0", bf["ack_ms"], wf["ack_ms"], "over_3s")
    out.append(
        (
            "flood acks per second",
            "",
            _f(bf["acks_per_second"]),
            _f(wf["acks_per_second"]),
            _ratio(wf["acks_per_second"], bf["acks_per_second"]),
        )
    )
    fair = w["fairness"]
    card = fair.get("card_seconds")
    out.append(
        (
            f"other user's card posted, s (asked mid-flood, "
            f"{fair.get('planner_backlog_at_ask')} queued ahead)",
            "",
            "n/a",
            _f(card) if card is not None else f"> {fair.get('gave_up_after_s')}",
            "",
        )
    )
    out.append(
        (
            "requests planned in the end",
            f"{w['requests_sent']} of {w['requests_sent']}",
            "n/a",
            f"{w['requests_planned']} of {w['requests_sent']}",
            "",
        )
    )
    click = w["approve_to_process_ms"]
    out.append(
        (
            "Approve → runbook process started p50 / p90 ms",
            "p50 ≤ 50",
            "n/a",
            f"{_f(click.get('p50'))} / {_f(click.get('p90'))}",
            "",
        )
    )
    non200 = bb["non_200"] + bf["non_200"], wb["non_200"] + wf["non_200"]
    out.append(("non-200 answers", "0", str(non200[0]), str(non200[1]), ""))
    return out


def verdicts(r: dict[str, Any]) -> dict[str, bool]:
    b, w = r["bare"], r["warden"]
    p99, bare_p99 = w["burst"]["ack_ms"]["p99"], b["burst"]["ack_ms"]["p99"]
    click = w["approve_to_process_ms"].get("p50")
    return {
        "burst ack p99 ≤ 100 ms": p99 <= 100,
        "burst ack p99 ≤ 3× bare Bolt p99": p99 <= 3 * bare_p99,
        "flood ack p99 ≤ 100 ms": w["flood"]["ack_ms"]["p99"] <= 100,
        "no flood ack over 3 s": w["flood"]["ack_ms"]["over_3s"] == 0,
        "every request planned": w["requests_planned"] == w["requests_sent"],
        "Approve → process p50 ≤ 50 ms": click is not None and click <= 50,
        "every request answered 200": w["burst"]["non_200"] + w["flood"]["non_200"] == 0,
    }


def print_table(db: str, r: dict[str, Any]) -> None:
    table = [("figure", "target", "bare Bolt", "Warden", "Warden/bare"), *rows(r)]
    widths = [max(len(row[i]) for row in table) for i in range(5)]
    print(f"\n{db}")
    for i, row in enumerate(table):
        print("  " + " | ".join(c.ljust(widths[j]) for j, c in enumerate(row)).rstrip())
        if i == 0:
            print("  " + "-+-".join("-" * wd for wd in widths))
    for name, ok in verdicts(r).items():
        print(f"  {'ok  ' if ok else 'MISS'} {name}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke test")
    parser.add_argument("--pg-url", default=DEFAULT_PG, help="its public schema is DROPPED")
    parser.add_argument("--py-spy", metavar="OUT", help="record the bursts with py-spy to OUT")
    parser.add_argument(
        "--py-spy-mode", choices=["cpu", "idle", "gil", "nonblocking"], default="idle"
    )
    parser.add_argument("--out", default=str(Path(__file__).with_name("results.json")))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # "Task queue depth is N"
    sizes = QUICK if args.quick else Sizes()
    dbs = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    tmp = Path(tempfile.mkdtemp(prefix="warden-bench-"))
    results: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "quick": args.quick,
        "plan_seconds": PLAN_SECONDS,
        "http_threads": HTTP_THREADS,
        "sizes": asdict(sizes),
    }
    ok = True
    for db in dbs:
        t0 = time.monotonic()
        print(f"[{db}] bare Bolt …", flush=True)
        bare = run_bare(
            database_url(db, tmp, args.pg_url, "bare"), sizes, args.py_spy, args.py_spy_mode, db
        )
        print(f"[{db}] Warden …", flush=True)
        warden = run_warden(
            database_url(db, tmp, args.pg_url, "warden"),
            sizes,
            tmp,
            args.py_spy,
            args.py_spy_mode,
            db,
        )
        r: dict[str, Any] = {"sizes": asdict(sizes), "bare": bare, "warden": warden}
        r["verdicts"] = verdicts(r)
        r["seconds"] = round(time.monotonic() - t0, 1)
        results[db] = r
        ok = ok and all(r["verdicts"].values())
        print_table(db, r)
    Path(args.out).write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print(f"\nwrote {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
