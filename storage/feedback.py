"""Feedback: one 👍 / 👎 per (action, person), what the card and the metrics read (part of
`storage.repo.Store`).
"""

from __future__ import annotations

from storage.db import Database


class FeedbackQueries:
    db: Database
