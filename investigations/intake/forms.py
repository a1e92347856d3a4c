"""The console's alert form: parses what a browser sends, then lets intake's AlertIn validate it.

The rules an alert must meet live in one place, investigations.intake.services.AlertIn (the API uses it
too). The form only turns the posted strings into values (a date, a JSON object), builds an
AlertIn from them and puts each of its errors on the field it names.
"""

import json
import uuid

import pydantic
from django import forms
from django.conf import settings
from django.utils import timezone

from investigations.intake import details as alert_details
from investigations.intake.services import CONSOLE_SOURCE as SOURCE
from investigations.intake.services import AlertIn
from investigations.models import Alert

DATETIME_LOCAL = "%Y-%m-%dT%H:%M"

# Clearer words than a regular expression for the identifiers AlertIn restricts.
PATTERN_MESSAGES = {
    "host": "A host name: letters, digits, '.', '_' or '-', starting with a letter or digit; no spaces.",
    "user": "A user name: letters, digits, '.', '_', '@', '\\' or '-', starting with a letter or digit; no spaces.",
}


def _now_local() -> str:
    return timezone.localtime().strftime(DATETIME_LOCAL)


class AlertForm(forms.Form):
    title = forms.CharField(strip=True)
    severity = forms.ChoiceField(choices=Alert.Severity.choices, initial=Alert.Severity.MEDIUM)
    host = forms.CharField(required=False, help_text="The host the alert names, e.g. WS-FIN-07.")
    user = forms.CharField(required=False, label="User", help_text="The account the alert names, e.g. j.doe.")
    observed_at = forms.DateTimeField(
        label="Observed at",
        initial=_now_local,
        input_formats=[DATETIME_LOCAL, "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local", "step": "1"}, format=DATETIME_LOCAL),
        help_text=f"In {timezone.get_default_timezone_name()}.",
    )
    details = forms.CharField(
        required=False,
        widget=forms.Textarea(
            attrs={"rows": 8, "spellcheck": "false", "placeholder": '{"rule": "…", "command_line": "…"}'}
        ),
        help_text="Optional: anything else known about the alert, as a JSON object.",
    )

    def clean_details(self) -> dict:
        text = self.cleaned_data["details"]
        if not text:
            return {}
        if len(text.encode()) > settings.ALERT_MAX_BYTES:  # the limit the alert API keeps too
            raise forms.ValidationError(f"Too large: at most {settings.ALERT_MAX_BYTES} bytes.", code="too_large")
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc}.", code="invalid_json") from None
        except RecursionError:  # far past AlertIn's depth limit, which words the error
            raise forms.ValidationError(
                f"Nested deeper than {alert_details.MAX_DEPTH} levels.", code="too_deep"
            ) from None
        if not isinstance(value, dict):
            raise forms.ValidationError("Must be a JSON object: {…}.", code="not_an_object")
        return value

    def clean(self):
        cleaned = super().clean()
        # Every field that could be read goes to AlertIn, so each of its problems shows at once;
        # a field that could not be read (its error is already on the form) is left out.
        values = {name: cleaned[name] for name in ("title", "severity", "observed_at", "details") if name in cleaned}
        values |= {name: cleaned.get(name) or None for name in ("host", "user")}
        self.alert_in = None
        try:
            alert_in = AlertIn(source=SOURCE, external_id=f"{SOURCE}-{uuid.uuid4().hex}", **values)
        except pydantic.ValidationError as exc:
            for error in exc.errors():
                name = str(error["loc"][0]) if error["loc"] else ""
                if name not in self.errors:
                    self.add_error(name if name in self.fields else None, _message(name, error))
            return cleaned
        if not self.errors:
            self.alert_in = alert_in
        return cleaned


def _message(field: str, error: dict) -> str:
    if error["type"] == "string_pattern_mismatch" and field in PATTERN_MESSAGES:
        return PATTERN_MESSAGES[field]
    message = error["msg"]
    prefix = "Value error, "
    if message.startswith(prefix):
        message = message[len(prefix) :]
    return message[:1].upper() + message[1:] + ("" if message.endswith(".") else ".")
