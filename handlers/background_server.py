"""A waitress server run on a thread of its own, and stopped without leaving anything open.

Both in-process servers use it: Warden's HTTP endpoint (`handlers/runtime.py`) and the
metrics port (`handlers/prometheus.py`). Closing a waitress server closes only its
listening socket; the connections it accepted (a keep-alive client's, say) stay in its
socket map, and its request threads wait for work that never comes. `stop()` ends all three.
"""

from __future__ import annotations

import threading
from typing import Any

from waitress import wasyncore


class BackgroundServer:
    """`server` (from waitress's `create_server`) served on a daemon thread named `name`."""

    def __init__(self, server: Any, name: str) -> None:
        self.server = server
        self._closing = threading.Event()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.effective_port)

    def start(self) -> BackgroundServer:
        self.thread.start()
        return self

    def _run(self) -> None:
        # Closing waitress from another thread can make its poll loop trip over a socket
        # that was just closed; that is the shutdown we asked for, not an error.
        try:
            self.server.run()
        except (OSError, ValueError):
            if not self._closing.is_set():
                raise

    def stop(self) -> None:
        """Close the listening socket, every accepted connection and the request threads."""
        self._closing.set()
        self.server.close()
        self.thread.join(timeout=10)
        wasyncore.close_all(self.server._map, ignore_all=True)
        self.server.task_dispatcher.shutdown(cancel_pending=True, timeout=5)
