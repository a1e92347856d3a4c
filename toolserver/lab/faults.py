"""Faults the lab injects per backend: timeouts, 5xx, 429, slow answers, malformed bodies.

A fault applies to every request of its backend (after the key and scope checks) until it
is cleared, or for `remaining` requests, after which it clears itself. Tests and the lab
admin page use inject() and clear(); the API views use take().
"""

from dataclasses import dataclass

from django.db import transaction

from toolserver.lab.models import LabFault

BACKENDS = ("siem", "edr", "identity", "ticketing", "intel")
MODES = ("none", "timeout", "error_5xx", "rate_limit", "slow", "malformed", "no_dedupe")
# no_dedupe answers as usual but ignores Idempotency-Key, as a directory or an EDR without one would.
DEFAULT_DELAY_MS = {"timeout": 30_000, "slow": 3_000}
DEFAULT_RETRY_AFTER_S = 30
MAX_DELAY_MS = 600_000
MAX_RETRY_AFTER_S = 3_600


@dataclass(frozen=True)
class Fault:
    """One application of a fault to one request."""

    backend: str
    mode: str
    delay_ms: int | None
    retry_after_s: int | None
    hit: int  # 1 for the first request the fault applied to, 2 for the next...


def inject(backend: str, mode: str, *, delay_ms=None, retry_after_s=None, remaining=None) -> LabFault:
    _check_backend(backend)
    if mode not in MODES:
        raise ValueError(f"unknown fault mode {mode!r}; one of {', '.join(MODES)}")
    if mode == "none":
        return clear(backend)[0]
    if delay_ms is not None and not 0 <= delay_ms <= MAX_DELAY_MS:
        raise ValueError(f"delay_ms must be between 0 and {MAX_DELAY_MS}")
    if retry_after_s is not None and not 1 <= retry_after_s <= MAX_RETRY_AFTER_S:
        raise ValueError(f"retry_after_s must be between 1 and {MAX_RETRY_AFTER_S}")
    if remaining is not None and remaining < 1:
        raise ValueError("remaining must be at least 1, or None for until cleared")
    values = {
        "mode": mode,
        # Keep only the settings that mean something for the mode, with their defaults filled in.
        "delay_ms": (DEFAULT_DELAY_MS[mode] if delay_ms is None else delay_ms) if mode in DEFAULT_DELAY_MS else None,
        "retry_after_s": (retry_after_s or DEFAULT_RETRY_AFTER_S) if mode == "rate_limit" else None,
        "remaining": remaining,
        "applied": 0,
    }
    fault, _ = LabFault.objects.update_or_create(backend=backend, defaults=values)
    return fault


def clear(backend: str | None = None) -> list[LabFault]:
    """Clear one backend's fault, or every backend's."""
    if backend is not None:
        _check_backend(backend)
    healthy = {"mode": "none", "delay_ms": None, "retry_after_s": None, "remaining": None, "applied": 0}
    return [
        LabFault.objects.update_or_create(backend=name, defaults=healthy)[0]
        for name in ([backend] if backend else BACKENDS)
    ]


def current() -> dict[str, LabFault]:
    """Each backend's fault, healthy ones included (as unsaved rows when never set)."""
    rows = {fault.backend: fault for fault in LabFault.objects.filter(backend__in=BACKENDS)}
    return {name: rows.get(name) or LabFault(backend=name) for name in BACKENDS}


def take(backend: str) -> Fault | None:
    """The fault to apply to this request, if any, counting it against `remaining`."""
    # The common case, a healthy backend, costs one read and takes no lock.
    if not LabFault.objects.filter(backend=backend).exclude(mode="none").exists():
        return None
    with transaction.atomic():
        row = LabFault.objects.select_for_update().filter(backend=backend).first()
        if row is None or row.mode == "none":
            return None
        row.applied += 1
        fault = Fault(backend, row.mode, row.delay_ms, row.retry_after_s, hit=row.applied)
        if row.remaining is not None:
            row.remaining -= 1
            if row.remaining == 0:  # the last one it was set for: the backend is healthy again
                row.mode, row.delay_ms, row.retry_after_s, row.remaining = "none", None, None, None
        row.save()
    return fault


# What a "malformed" backend answers, alternating so callers meet both kinds of breakage:
# JSON cut off mid-way, and well-formed JSON of the wrong shape.
MALFORMED_BODIES = (
    b'{"items": [{"at": "2025-01-0',
    b'{"unexpected": "maintenance", "message": "<html><body>Service temporarily unavailable</body></html>"}',
)


def malformed_body(fault: Fault) -> bytes:
    return MALFORMED_BODIES[(fault.hit - 1) % len(MALFORMED_BODIES)]


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; one of {', '.join(BACKENDS)}")
