"""Alerts: when each last fired; the cool-down is a conditional update, so two replicas fire once
(part of `storage.repo.Store`).
"""

from __future__ import annotations

from storage.db import Database


class AlertQueries:
    db: Database
