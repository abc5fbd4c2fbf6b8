"""Outcome checks (a runbook's verify): which are due, claimed once across replicas, and their
results (part of `storage.repo.Store`).
"""

from __future__ import annotations

from storage.db import Database


class CheckQueries:
    db: Database
