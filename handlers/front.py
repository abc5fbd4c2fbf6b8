"""`warden serve`'s front process: it answers Slack, and does nothing else.

Slack gives an app 3 s to answer a request, and requests come in bursts. The threads of one
Python process share one GIL, so in a single process every ack also waits behind Warden's
own work (planning, Block Kit, posting cards) and behind the other request threads. So
`warden serve` runs two processes:

* **the front** (this module): one asyncio loop (aiohttp). For each request on
  `/slack/events` it checks the size, the signature and the envelope with the same functions
  `handlers/http.py` uses, then
  - stores an event callback or a slash command in the inbox and answers 200 once it is
    stored (one thread stores every request waiting at that moment in one transaction,
    bodies sealed), or 503 if it cannot be stored, so that Slack sends it again. On SQLite
    it stores into its spool (`storage/spool.py`), a file no other process writes, so the
    ack never waits for the write lock of the database Warden's work is using;
  - forwards anything else (clicks, modal submissions, URL checks) to the worker and relays
    its answer, since that answer is content only Warden's logic can give.
  Every other path (`/healthz`, `/readyz`, `/metrics`) is forwarded as it is.
* **the worker**: `warden serve --worker`, the whole of Warden (Bolt, the gate, the pools,
  the scheduler, the outbox) on 127.0.0.1. After each stored batch the front tells it
  (`POST /internal/inbox`) and it takes the stored requests (`Inbox.take_due`, which first
  imports the spool) and hands them to Bolt. Unowned entries are due for any replica's
  worker, and a worker also looks for them every `RECOVER_EVERY` seconds on its own.

If the worker exits, the front starts it again (after 1 s, doubling up to 30 s while it
keeps failing). Requests are still stored meanwhile and are handled once it is back; clicks
get a 503 until then. The worker stops when the front does (SIGTERM or SIGINT to the front
stops both), and on its own when its stdin closes, which happens if the front dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiohttp import ClientError, ClientSession, ClientTimeout, web
from slack_sdk.signature import SignatureVerifier
from sqlalchemy.exc import DBAPIError

from bot.app import check
from bot.errors import ConfigError
from bot.sealing import Sealer
from bot.settings import Settings
from handlers.http import (
    MAX_BODY,
    WAKE_PATH,
    freeze_startup_heap,
    parsed,
    peer_address,
    unverified,
)
from handlers.inbox import MAX_BATCH, STORE_TIMEOUT, arrival, sealed, store_sealed
from storage.db import Database
from storage.inbox import Arrival
from storage.models import utcnow
from storage.repo import Store
from storage.spool import Spool, SpoolError, spool_path

log = logging.getLogger(__name__)

FORWARD_TIMEOUT_S = 10.0
TIDY_EVERY_S = 1.0
RESTART_FIRST_S, RESTART_MAX_S = 1.0, 30.0
HEALTHY_AFTER_S = 60.0  # a worker that ran this long restarts after RESTART_FIRST_S again
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "content-length",
        "host",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


def _json(status: int, body: dict[str, Any]) -> web.Response:
    return web.json_response(body, status=status)


def _end_to_end(headers: Any) -> list[tuple[str, str]]:
    return [(k, v) for k, v in headers.items() if k.lower() not in _HOP_BY_HOP]


class Front:
    """The front's request handling: store-and-ack, or forward to the worker."""

    def __init__(
        self,
        store: Store,
        sealer: Sealer,
        signing_secret: str,
        worker_url: str,
        spool: Spool | None = None,
    ) -> None:
        if not signing_secret.strip():
            raise ConfigError("SLACK_SIGNING_SECRET is empty")
        self.store, self.sealer, self.spool = store, sealer, spool
        self.verifier = SignatureVerifier(signing_secret)
        self.worker_url = worker_url
        self._waiting: list[tuple[Arrival, asyncio.Future[bool]]] = []
        self._write_owed = asyncio.Event()
        self._wake_owed = asyncio.Event()
        # Database writes block: one thread, so one batch at a time and the loop stays free.
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="warden-front-store")
        self._session: ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_post("/slack/events", self.events)
        app.router.add_route("*", "/{tail:.*}", self.forward)
        app.on_startup.append(self._start)
        app.on_cleanup.append(self._stop)
        return app

    async def _start(self, _app: web.Application) -> None:
        self._session = ClientSession(
            timeout=ClientTimeout(total=FORWARD_TIMEOUT_S), auto_decompress=False
        )
        self._tasks = [
            asyncio.create_task(self._write_loop()),
            asyncio.create_task(self._wake_loop()),
        ]
        if self.spool is not None:
            self._tasks.append(asyncio.create_task(self._tidy_loop()))

    async def _stop(self, _app: web.Application) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session is not None:
            await self._session.close()
        self._writer.shutdown(wait=True)
        if self.spool is not None:
            self.spool.dispose()

    # -- /slack/events ------------------------------------------------------------------------

    async def events(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _json(413, {"error": "bad length"})
        try:
            text: str | None = body.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        refusal = unverified(
            self.verifier,
            request.headers.get("X-Slack-Request-Timestamp", ""),
            request.headers.get("X-Slack-Signature", ""),
            text,
        )
        if refusal:
            log.warning(
                "refused an unverified request on /slack/events from %s: %s",
                peer_address(request.remote or ""),
                refusal,
            )
            return _json(401, {"error": "invalid request"})
        content_type = request.headers.get("Content-Type", "")
        data, problem = (
            (None, "the body is not UTF-8") if text is None else parsed(text, content_type)
        )
        if data is None or text is None:
            log.warning("refusing a malformed request on /slack/events: %s", problem)
            return _json(400, {"error": problem or "malformed request"})
        entry = arrival(data, text, content_type)
        if entry is None:
            return await self._relay(request, body)
        if not await self._store(entry):
            return _json(503, {"error": "try again"})
        return web.Response(status=200)

    async def _store(self, entry: Arrival) -> bool:
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append((entry, done))
        self._write_owed.set()
        try:
            return await asyncio.wait_for(asyncio.shield(done), STORE_TIMEOUT)
        except TimeoutError:
            return False

    async def _write_loop(self) -> None:
        """Group commit: everything waiting when the last write ended goes in the next one."""
        loop = asyncio.get_running_loop()
        while True:
            await self._write_owed.wait()
            self._write_owed.clear()
            while self._waiting:
                batch = self._waiting[:MAX_BATCH]
                del self._waiting[:MAX_BATCH]
                arrivals = [a for a, _ in batch]
                try:
                    await loop.run_in_executor(self._writer, self._store_batch, arrivals)
                    stored = True
                except Exception:
                    log.exception(
                        "could not store %d request(s) from Slack; answering 503", len(batch)
                    )
                    stored = False
                for _, done in batch:
                    if not done.done():
                        done.set_result(stored)
                if stored:
                    self._wake_owed.set()

    def _store_batch(self, arrivals: list[Arrival]) -> None:
        if self.spool is not None:  # SQLite: a file only this process writes
            self.spool.append(sealed(self.sealer, arrivals), utcnow())
        else:  # unowned (None): due at once for any replica's worker
            store_sealed(self.store, self.sealer, arrivals, None, utcnow())

    async def _tidy_loop(self) -> None:
        """Every `TIDY_EVERY_S`, drop what the worker has imported from the spool (on the
        writer thread: the spool's only writer)."""
        assert self.spool is not None
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(TIDY_EVERY_S)
            try:
                await loop.run_in_executor(self._writer, self.spool.tidy, self.store)
            except Exception:
                log.exception("could not tidy the spool; trying again")

    async def _wake_loop(self) -> None:
        """Tell the worker requests are waiting (one call at a time; calls owed meanwhile
        become one)."""
        while True:
            await self._wake_owed.wait()
            self._wake_owed.clear()
            assert self._session is not None
            try:
                async with self._session.post(self.worker_url + WAKE_PATH) as resp:
                    await resp.read()
            except (ClientError, TimeoutError, OSError):
                pass  # it finds them on its own within RECOVER_EVERY, or once it is back

    # -- everything else ----------------------------------------------------------------------

    async def forward(self, request: web.Request) -> web.StreamResponse:
        if request.path == WAKE_PATH:  # between the front and its worker only
            return _json(404, {"error": "not found"})
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _json(413, {"error": "bad length"})
        return await self._relay(request, body)

    async def _relay(self, request: web.Request, body: bytes) -> web.StreamResponse:
        assert self._session is not None
        try:
            async with self._session.request(
                request.method,
                self.worker_url + request.rel_url.path_qs,
                headers=_end_to_end(request.headers),
                data=body,
                allow_redirects=False,
            ) as resp:
                payload = await resp.read()
                return web.Response(
                    status=resp.status, body=payload, headers=_end_to_end(resp.headers)
                )
        except (ClientError, TimeoutError, OSError):
            log.warning("the worker process did not answer %s %s", request.method, request.path)
            return _json(503, {"error": "Warden is starting; try again"})


class WorkerProcess:
    """`warden serve --worker` as a child process, started again whenever it exits."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.argv, self.env = argv, env
        self.stopping = False
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        # Its stdin is a pipe it watches: if this process dies, the pipe closes and the
        # worker stops too instead of living on without a front.
        self.proc = subprocess.Popen(self.argv, env=self.env, stdin=subprocess.PIPE)

    async def watch(self) -> None:
        delay = RESTART_FIRST_S
        while not self.stopping and self.proc is not None:
            started = time.monotonic()
            code = await asyncio.to_thread(self.proc.wait)
            if self.stopping:
                return
            if time.monotonic() - started > HEALTHY_AFTER_S:
                delay = RESTART_FIRST_S
            log.error("the worker process exited (status %s); starting it in %.0f s", code, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RESTART_MAX_S)
            if not self.stopping:
                self.start()

    def stop(self) -> None:
        self.stopping = True
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def worker_argv(config: str | None, verbose: bool) -> list[str]:
    argv = [sys.executable, "-m", "handlers.cli", *(["-v"] if verbose else []), "serve", "--worker"]
    return argv + (["--config", config] if config else [])


def open_spool(db: Database) -> Spool | None:
    """The front's spool beside a SQLite database (made if missing); None on PostgreSQL. A
    file it cannot use stops `warden serve` with a one-line error."""
    path = spool_path(db)
    if path is None:
        return None
    try:
        return Spool.create(path)
    except SpoolError as e:
        raise ConfigError(str(e)) from e
    except DBAPIError as e:
        raise ConfigError(f"{path} cannot be used as the spool ({e.orig}); move it away") from e


def serve(settings: Settings, *, config: str | None = None, verbose: bool = False) -> int:
    """`warden serve` in HTTP mode: the front here, the worker as a child. Blocks until
    SIGINT/SIGTERM."""
    if settings.slack_bot_token is None or settings.slack_signing_secret is None:
        raise ConfigError("SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET must be set")
    check(settings)  # a bad policy stops here, once, not in a worker restarted forever
    db = Database(settings.database_url)
    db.upgrade()  # before the worker starts, so the two never migrate at once
    worker_port = _free_port()
    worker = WorkerProcess(worker_argv(config, verbose), dict(os.environ, PORT=str(worker_port)))
    spool = open_spool(db)
    front = Front(
        Store(db),
        Sealer(settings.data_key()),
        settings.slack_signing_secret.get_secret_value(),
        f"http://127.0.0.1:{worker_port}",
        spool=spool,
    )
    app = front.app()

    async def start_worker(_app: web.Application) -> None:
        worker.start()
        _app["worker_watch"] = asyncio.create_task(worker.watch())

    async def stop_worker(_app: web.Application) -> None:
        await asyncio.to_thread(worker.stop)
        _app["worker_watch"].cancel()

    app.on_startup.append(start_worker)
    app.on_cleanup.insert(0, stop_worker)
    log.info(
        "Warden listening on port %s (POST /slack/events, GET /healthz, /readyz, /metrics)",
        settings.port,
    )
    freeze_startup_heap()
    try:
        web.run_app(
            app, host="0.0.0.0", port=settings.port, print=None, access_log=None, backlog=1024
        )
    finally:
        worker.stop()
        db.dispose()
    return 0
