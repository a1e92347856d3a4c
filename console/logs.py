"""Logging filters (settings.LOGGING)."""

import logging


class OneLineRefusals(logging.Filter):
    """A refusal (403, 404: PermissionDenied, Http404) is the client's doing, not a fault: Django logs
    it with the exception's traceback; keep the one line that names the status and the path."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "status_code", 500) < 500:
            record.exc_info = record.exc_text = None
        return True
