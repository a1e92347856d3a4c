"""What an error report (the email to ADMINS, a DEBUG page) may show of the settings."""

from django.utils.regex_helper import _lazy_re_compile
from django.views.debug import SafeExceptionReporterFilter


class ReporterFilter(SafeExceptionReporterFilter):
    """Django's filter, which masks names with KEY, SECRET, PASS, TOKEN..., plus every *_URL
    (DATABASE_URL, REDIS_URL and the backends' addresses may carry a password) and the channel
    layer's and Celery's broker settings, which hold the Redis URL under other names."""

    hidden_settings = _lazy_re_compile(
        SafeExceptionReporterFilter.hidden_settings.pattern
        + r"|_URL$|^CHANNEL_LAYERS$|^CELERY_BROKER|^CELERY_RESULT_BACKEND$",
        flags=SafeExceptionReporterFilter.hidden_settings.flags,
    )
