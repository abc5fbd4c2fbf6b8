"""The people behind approver groups: Slack user groups' members, cached.

The gate asks who may approve on every decision and click; a user group (`S…` in
`access.approvers`, `access.channels.C….approvers` or `tools.NAME.approvers`) is looked up
through the Chat port (`usergroups.users.list`) at most once per `ttl` per group, so a change
of membership takes effect within `ttl` and a burst of clicks costs one call.

It fails closed: a group the platform refuses (deleted, disabled, unknown) approves nothing.
When the platform cannot be reached, the last known members serve for at most `stale_for`,
then nothing — an approver group never grows from an error.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from bot.chat import Chat
from bot.errors import ChatRefused

log = logging.getLogger(__name__)

GROUP_TTL_S = 300.0
STALE_FOR_S = 3600.0


@dataclass(kw_only=True, frozen=True)
class _Known:
    members: frozenset[str]
    at: float


class Directory:
    """User groups' members, cached for `ttl` seconds."""

    def __init__(
        self,
        chat: Chat,
        *,
        ttl: float = GROUP_TTL_S,
        stale_for: float = STALE_FOR_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.chat = chat
        self.ttl = ttl
        self.stale_for = stale_for
        self.clock = clock
        self._known: dict[str, _Known] = {}
        self._lock = threading.Lock()

    def members(self, group: str) -> frozenset[str]:
        """The user ids in `group` now (as of at most `ttl` ago)."""
        now = self.clock()
        with self._lock:
            known = self._known.get(group)
        if known is not None and now - known.at < self.ttl:
            return known.members
        try:
            found = frozenset(self.chat.usergroup_members(group))
        except ChatRefused as exc:
            log.warning("approver group %s: refused (%s); it approves nothing", group, exc.code)
            found = frozenset()
        except Exception as exc:  # the platform is unreachable: keep what we knew, briefly
            if known is not None and now - known.at < self.stale_for:
                log.warning("approver group %s: %s; using its members from before", group, exc)
                return known.members
            log.warning("approver group %s: %s; it approves nothing for now", group, exc)
            return frozenset()
        with self._lock:
            self._known[group] = _Known(members=found, at=now)
        return found
