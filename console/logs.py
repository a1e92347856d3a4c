"""Logging filters (settings.LOGGING)."""

import logging
import re

from core.text import as_read


class OneLineRefusals(logging.Filter):
    """A refusal (403, 404: PermissionDenied, Http404) is the client's doing, not a fault: Django logs
    it with the exception's traceback; keep the one line that names the status and the path."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "status_code", 500) < 500:
            record.exc_info = record.exc_text = None
        return True


class _ArgumentsFilter(logging.Filter):
    """Changes each string argument of a record (`changed`), keeping their number and order (uvicorn's access
    formatter reads them by position)."""

    def changed(self, value: str) -> str:
        raise NotImplementedError

    def _each(self, value):
        return self.changed(value) if isinstance(value, str) else value

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self._each(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: self._each(arg) for key, arg in record.args.items()}
        return True


class RedactTokens(_ArgumentsFilter):
    """No token in a log line (architecture rule 2): Splunk's integration token travels in the URL
    (POST /api/alerts/splunk/{token}), which the request log (uvicorn.access) and Django's one-line
    refusals (django.request) print. Cut, in the message and in each of its arguments: whatever follows
    /api/alerts/splunk/ up to the next separator, and anything shaped like a token (ghi_..., ghu_...)."""

    PATTERNS = (
        (re.compile(r"(/api/alerts/splunk/)[^/\s?#\"']+"), r"\1[redacted]"),
        (re.compile(r"\bgh[iu]_[A-Za-z0-9_-]{8,}"), "[redacted]"),
    )

    def changed(self, value: str) -> str:
        for pattern, replacement in self.PATTERNS:
            value = pattern.sub(replacement, value)
        return value

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self._each(record.msg)
        return super().filter(record)


class OneLineArguments(_ArgumentsFilter):
    """A log line is one line, read as written: a logged value a client chose (a path decoded from %0a, a
    header) has its line breaks (C0 and C1 controls, U+2028 and U+2029, which log viewers and
    str.splitlines break at too) and what reorders or hides text (core.text) escaped, so it cannot end
    the line and forge the next, nor change how it reads."""

    def changed(self, value: str) -> str:
        return as_read(value, keep="\t")
