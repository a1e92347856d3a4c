"""The investigations list's filters: one form reads them from a query string, for the page and the API.

Its cleaned data is what `selectors.filtered` turns into a queryset filter; a value it refuses is an
error naming its field (the page shows it, the API answers 400), never a server error.
"""

from datetime import UTC

from django import forms

from investigations.models import Alert, Investigation

SEARCH_MAX = 100  # the free-text search: icontains over four columns, so kept short
OBSERVED, CREATED = "observed", "created"


def _any(choices) -> list:
    return [("", "any"), *choices]


class FilterDateTimeField(forms.DateTimeField):
    """A date and time as a datetime-local input sends it (UTC when no offset is given), or ISO 8601,
    within what both databases store; compared in UTC, so an unusual offset reaches no database."""

    widget = forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M")

    def clean(self, value):
        moment = super().clean(value)
        if moment is None:
            return None
        if not 1970 <= moment.year <= 2999:
            raise forms.ValidationError("Must be between 1970 and 2999.", code="out_of_range")
        return moment.astimezone(UTC)


class InvestigationFilters(forms.Form):
    q = forms.CharField(
        required=False,
        max_length=SEARCH_MAX,
        label="Search",
        help_text="Part of the alert's title, host, user or external id.",
        widget=forms.TextInput(attrs={"type": "search", "placeholder": "title, host, user or external id"}),
    )
    status = forms.ChoiceField(required=False, choices=_any(Investigation.Status.choices))
    verdict = forms.ChoiceField(required=False, choices=_any(Investigation.Verdict.choices))
    severity = forms.ChoiceField(required=False, choices=_any(Alert.Severity.choices))
    host = forms.CharField(required=False, max_length=64, help_text="The alert's host, any case.")
    user = forms.CharField(required=False, max_length=64, help_text="The user the alert names, any case.")
    source = forms.CharField(required=False, max_length=64, help_text="The alert's source, e.g. splunk.")
    time = forms.ChoiceField(
        required=False,
        label="Time of",
        choices=[(CREATED, "investigation created"), (OBSERVED, "alert observed")],
        help_text="Which time From and To bound.",
    )
    since = FilterDateTimeField(required=False, label="From", help_text="UTC when no offset is given.")
    until = FilterDateTimeField(required=False, label="To", help_text="UTC when no offset is given.")

    def clean(self):
        data = super().clean()
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            self.add_error("until", forms.ValidationError("Must not be before From.", code="before_since"))
        return data

    def active(self) -> dict[str, str]:
        """The filters given, as sent: what the page's links carry on to the next page."""
        return {name: self.data[name] for name in self.fields if self.data.get(name)}

    def field_errors(self) -> list[tuple[str, str]]:
        """(field, message) for each refused value, as the API's 400 names them."""
        return [(name, message) for name, messages in self.errors.items() for message in messages]
