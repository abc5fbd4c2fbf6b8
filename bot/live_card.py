"""The live card of a running action: its output while it runs, and its Cancel.

While an action runs, the executor's thread that waits for it (`bot.execution.Executor`)
calls the run's `LiveCard` every `bot.execution.WATCH_EVERY` seconds. It reads the action's
Cancel request (set in the database by whichever replica took the click, so a click anywhere
reaches the replica running it) and pulls the run's stop switch (`bot.runbooks.LiveRun`);
every `PROGRESS_EVERY` seconds it stores the command's last lines (redacted and masked like
any output) and owes the card a refresh — one in flight at most — so the card shows the time
it has been running and its output. A stopped run ends `cancelled`, audited under the name of
whoever clicked Cancel (`bot.outcomes.Outcomes.record`).
"""

from __future__ import annotations

import logging
import time

from bot.core import Core
from bot.redact import redact
from bot.runbooks import LiveRun
from storage.models import Action

# Lines about runs keep the logger they always had (log filters and tests name it).
log = logging.getLogger("bot.execution")

PROGRESS_EVERY = 5.0  # seconds between refreshes of a running action's card


class LiveCard:
    """Keeps one running action's card live and hears its Cancel (the `watch` of its run,
    called on the executor's thread every `WATCH_EVERY` seconds while the run lasts; stops
    with it). Each call reads whether someone asked to cancel — the request may have been
    written by another replica — and pulls the run's stop switch; every `PROGRESS_EVERY`
    seconds it stores the output's last lines and owes the card a refresh. Never raises: a
    database hiccup costs one refresh, never the run."""

    def __init__(self, core: Core, action: Action, live: LiveRun | None) -> None:
        self.core = core
        self.action = action
        self.live = live
        self._next_refresh = time.monotonic() + PROGRESS_EVERY

    def __call__(self) -> None:
        try:
            self._look()
        except Exception:
            log.exception("could not refresh the live card of %s", self.action.id)

    def _look(self) -> None:
        core, action, live = self.core, self.action, self.live
        if live is not None and not live.stop_requested:
            by = core.store.cancel_requested(action.id)
            if by is not None:
                log.info("stopping %s: cancel requested by %s", action.tool, by)
                live.stop()
        now = time.monotonic()
        if now < self._next_refresh:
            return
        self._next_refresh = now + PROGRESS_EVERY
        progress = None
        if live is not None:
            # Like any output: secrets redacted, personal data as the request's placeholders.
            shown = redact(live.last_lines())
            progress = (
                core.privacy.masking(
                    action.request_id, lambda m: core.privacy.mask_output(m, shown)
                )
                if shown
                else None
            )
        if core.store.live_progress(action.id, core.owner, progress):
            core.kick()
