"""Running Warden for real: `warden serve` (HTTP via waitress, or Socket Mode)."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from dataclasses import dataclass
from typing import Any

from slack_bolt import App

from bot.app import Warden, build
from bot.errors import ConfigError
from bot.settings import Settings
from handlers.background_server import BackgroundServer
from handlers.http import WardenWSGI, freeze_startup_heap, make_server
from handlers.inbox import Inbox
from handlers.prometheus import MetricsServer, Probes
from handlers.slack_app import create_app
from handlers.slack_client import SlackChat, make_web_client
from storage.spool import spool_path

log = logging.getLogger(__name__)


@dataclass
class Running:
    """A started Warden with its Bolt app and HTTP server (stop() shuts all down)."""

    warden: Warden
    app: App
    http: BackgroundServer
    inbox: Inbox
    metrics: MetricsServer | None = None  # WARDEN_METRICS_PORT

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http.port}"

    def stop(self) -> None:
        self.http.stop()
        self.inbox.stop()
        if self.metrics is not None:
            self.metrics.stop()
        self.warden.stop()


def start(
    settings: Settings,
    *,
    host: str = "0.0.0.0",
    port: int | None = None,
    metrics_host: str | None = None,
    under_front: bool = False,
    **build_kwargs: Any,
) -> Running:
    """Build Warden, start its jobs and serve HTTP on a background thread (`host`; the
    metrics port, if any, on `metrics_host`, by default the same). `under_front`: this is
    `warden serve`'s worker, whose front tidies the spool."""
    if settings.slack_bot_token is None or settings.slack_signing_secret is None:
        raise ConfigError("SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET must be set")
    client = make_web_client(settings.slack_bot_token.get_secret_value(), settings.slack_api_url)
    if "chat" not in build_kwargs:
        build_kwargs["chat"] = SlackChat(client)
    warden = build(settings, **build_kwargs)
    app = create_app(
        warden.lifecycle,
        signing_secret=settings.slack_signing_secret.get_secret_value(),
        client=client,
    )
    warden.start()
    lc = warden.lifecycle
    inbox = Inbox(
        app,
        warden.store,
        warden.workers.inbox,
        lc.owner,
        lc.core.clock,
        lc.core.privacy.sealer,
        spool_path=spool_path(warden.store.db),
        tidy_spool=not under_front,
    ).start()
    server = make_server(
        WardenWSGI(
            app,
            lc,
            signing_secret=settings.slack_signing_secret.get_secret_value(),
            inbox=inbox,
        ),
        host,
        settings.port if port is None else port,
    )
    return Running(
        warden=warden,
        app=app,
        http=BackgroundServer(server, "warden-http").start(),
        inbox=inbox,
        metrics=metrics_server(warden, settings, metrics_host or host),
    )


def metrics_server(warden: Warden, settings: Settings, host: str) -> MetricsServer | None:
    """`/metrics` and `/readyz` on WARDEN_METRICS_PORT, started; None when it is unset."""
    if settings.warden_metrics_port is None:
        return None
    probes = Probes(warden.lifecycle.store, warden.lifecycle.core.clock)
    server = MetricsServer(probes, host, settings.warden_metrics_port).start()
    log.info("metrics on port %s (GET /metrics, GET /readyz)", server.port)
    return server


def serve(settings: Settings, socket_mode: bool = False, worker: bool = False) -> int:
    """`warden serve --single-process` (or `--worker`, the front process's child: on
    127.0.0.1, stopping when its stdin closes): block until SIGINT/SIGTERM."""
    if socket_mode:
        return _socket_mode(settings)
    if worker and settings.warden_worker_nice:
        os.nice(settings.warden_worker_nice)  # acks, in the front process, go first
    # The worker is reached through the front only; WARDEN_METRICS_PORT is for Prometheus.
    running = start(
        settings,
        host="127.0.0.1" if worker else "0.0.0.0",
        metrics_host="0.0.0.0",
        under_front=worker,
    )
    freeze_startup_heap()
    log.info(
        "Warden %s on port %s (POST /slack/events, GET /healthz, /readyz, /metrics)",
        "worker listening" if worker else "listening",
        running.http.port,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if worker:
        threading.Thread(
            target=_until_eof, args=(stop,), name="warden-front-watch", daemon=True
        ).start()
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    running.stop()
    return 0


def _until_eof(stop: threading.Event) -> None:
    """The front process holds this process's stdin open: EOF means it is gone."""
    with contextlib.suppress(OSError, ValueError):
        sys.stdin.buffer.read()
    stop.set()


def _socket_mode(settings: Settings) -> int:
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    if settings.slack_app_token is None:
        raise ConfigError("--socket-mode needs SLACK_APP_TOKEN (an xapp- token)")
    if settings.slack_bot_token is None:
        raise ConfigError("SLACK_BOT_TOKEN must be set")
    client = make_web_client(settings.slack_bot_token.get_secret_value(), settings.slack_api_url)

    warden = build(settings, chat=SlackChat(client))
    app = create_app(warden.lifecycle, signing_secret="socket-mode-unused", client=client)
    warden.start()
    metrics = metrics_server(warden, settings, "0.0.0.0")
    handler = SocketModeHandler(app, settings.slack_app_token.get_secret_value())
    try:
        handler.start()  # type: ignore[no-untyped-call]
    finally:
        if metrics is not None:
            metrics.stop()
        warden.stop()
    return 0
