"""The audit trail of admin actions, REST and dashboard alike: who (key prefix), what,
target, when, and through which door. Kept in Redis for the dashboard (the latest 1000)
and written to the log (one JSON object a line with ``QFLEET_LOG_JSON=1``)."""

from __future__ import annotations

import logging
from typing import Any, Literal

from .store import Store

log = logging.getLogger("qfleet.audit")


def audit(
    store: Store, actor: str, action: str, target: str, via: Literal["rest", "dashboard", "cli"], **details: Any
) -> None:
    """Record one admin action. ``actor`` is the admin key's prefix, never the key."""
    store.audit(actor, action, target, via=via, **details)
    log.info(
        "admin action: %s %s",
        action,
        target,
        extra={"actor": actor, "action": action, "target": target, "via": via, "details": details},
    )
