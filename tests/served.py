"""`warden serve` as it is deployed — a front process and its worker — for tests that need
real processes: crashes, restarts, the front's own behaviour."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from devslack import Persona, Workspace
from tests.conftest import ADMIN, APPROVER, REQUESTER
from tests.slack_fixtures import CHANNEL, OPS, SECRET, TOKEN

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def until(fn: Any, timeout: float = 30.0) -> Any:
    """Poll a condition held in another process (its database rows, its files) until it
    holds; return its value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def workspace() -> Workspace:
    """A started local Slack workspace with a requester, an approver and an admin."""
    ws = Workspace(
        signing_secret=SECRET,
        bot_url="",
        bot_token=TOKEN,
        team_id="T0TEST",
        bot_user_id="U0WARDEN",
        personas=[
            Persona(id=REQUESTER, name="riley", label="Riley"),
            Persona(id=APPROVER, name="avery", label="Avery"),
            Persona(id=ADMIN, name="sam", label="Sam"),
        ],
        channels={CHANNEL: "general", OPS: "ops"},
    )
    ws.start()
    return ws


def serve_env(api_url: str, database_url: str, config: Path, port: int) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "ANTHROPIC_"))},
        "SLACK_BOT_TOKEN": TOKEN,
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": api_url,
        "DATABASE_URL": database_url,
        "WARDEN_CONFIG": str(config),
        "PORT": str(port),
    }


def _stats() -> Iterator[tuple[int, list[str]]]:
    """Each process's pid and the fields of /proc/<pid>/stat after its name."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp …": comm may hold spaces and parentheses.
        yield int(entry.name), stat[stat.rindex(")") + 2 :].split()


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (from /proc)."""
    return [child for child, fields in _stats() if int(fields[1]) == pid]


def group(pgid: int) -> list[int]:
    """The live processes of process group `pgid` (zombies have exited)."""
    return [pid for pid, fields in _stats() if int(fields[2]) == pgid and fields[0] != "Z"]


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2 :].split()[0] != "Z"  # a zombie has exited


class Served:
    """`warden serve` (front and worker) in a process group of its own."""

    def __init__(self, env: dict[str, str], port: int, *args: str) -> None:
        self.env, self.port, self.args = env, port, args
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from handlers.cli import main; raise SystemExit(main())",
                "serve",
                *self.args,
            ],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.healthy():
                return
            if self.proc.poll() is not None:
                raise AssertionError("warden serve exited")
            time.sleep(0.05)  # polling a process coming up, not synchronising work
        self.kill()  # never leave a front (and its worker) behind
        raise AssertionError("warden serve did not answer /healthz")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/healthz", timeout=2) as resp:
                return bool(resp.status == 200)
        except urllib.error.HTTPError as exc:  # 503 while the worker starts
            exc.close()
            return False
        except OSError:
            return False

    def worker(self) -> int:
        """The worker process's pid (the front's one child)."""
        assert self.proc is not None
        (pid,) = until(lambda: children(self.proc.pid) if self.proc else None)
        return int(pid)

    def kill(self) -> None:
        """SIGKILL to the whole group, front and worker: a crash of the machine's process.
        Returns once every process of the group is gone (a worker outlives its front by
        a moment)."""
        assert self.proc is not None
        pgid = self.proc.pid
        with contextlib.suppress(ProcessLookupError):  # the group is gone already
            os.killpg(pgid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        until(lambda: not group(pgid), timeout=10)

    def stop(self) -> None:
        """The end of a test: kill the group. Nothing is left to check in a graceful stop
        here (tests/test_front.py tests that one), and it is slow: the worker waits 10 s for
        its HTTP thread while the front still holds keep-alive connections to it."""
        if self.proc is not None:
            self.kill()
