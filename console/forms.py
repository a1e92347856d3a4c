"""The administration forms: each turns what an admin typed into values, or says, per field, what is wrong."""

from urllib.parse import urlsplit

from django import forms
from django.contrib.auth.models import Group, User
from django.core.validators import URLValidator

from console.administration import DELEGATED_SERVER_FIELDS, GRANTABLE, SERVER_FIELDS
from console.roles import ROLES
from investigations.models import Budgets, ToolPolicy
from toolserver import egress
from toolserver.adapters import ADAPTERS
from toolserver.models import ToolServer
from toolserver.supervisor import allowed_backend_hosts


def check_backend_url(url: str) -> str:
    """A backend's base URL: http(s), a host, and no user name, password, query or fragment in it
    (a credential belongs in the credential, where it is sealed, not in a URL shown on pages)."""
    url = url.strip()
    if not url:
        return ""
    URLValidator(schemes=["http", "https"], message="Enter the backend's base URL, e.g. https://edr.example.com/api")(url)
    parts = urlsplit(url)
    if parts.username or parts.password:
        raise forms.ValidationError("Leave the user name and password out of the URL: set them as the credential.")
    if parts.query or parts.fragment:
        raise forms.ValidationError("The base URL takes no query (?…) or fragment (#…).")
    return url.rstrip("/")


def check_allowed_host(url: str, server: str) -> None:
    """The URL's host passes the deployment's allow-list (toolserver.egress), said at once to the admin."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        egress.check_listed(egress.parse(allowed_backend_hosts(server)), parts.hostname, port)
    except egress.EgressRefused as exc:
        raise forms.ValidationError(f"{exc}: ask whoever deploys Gatehouse to list it.") from None


class DelegatedServerForm(forms.ModelForm):
    """What whoever holds `manage_toolserver` on a server may change (administration.DELEGATED_SERVER_FIELDS)."""

    class Meta:
        model = ToolServer
        fields = list(DELEGATED_SERVER_FIELDS)
        labels = {"rate_limit_calls": "Calls per window", "rate_limit_window_s": "Window (seconds)"}


class ServerForm(DelegatedServerForm):
    """The admin's: where the server points too."""

    class Meta(DelegatedServerForm.Meta):
        fields = list(SERVER_FIELDS)
        labels = {**DelegatedServerForm.Meta.labels, "url": "Backend URL"}
        help_texts = {"url": "Changing the adapter or URL revokes the credential: set it again for the new backend."}

    def clean_adapter(self):
        adapter = self.cleaned_data["adapter"].strip()
        known = ADAPTERS.get(self.instance.name, {})
        if adapter not in known:
            raise forms.ValidationError(
                f"Unknown adapter {adapter!r} for {self.instance.name}: choose one of {', '.join(sorted(known))}."
            )
        return adapter

    def clean_url(self):
        url = check_backend_url(self.cleaned_data["url"])
        if url:
            check_allowed_host(url, self.instance.name)
        return url


class CredentialForm(forms.Form):
    secret = forms.CharField(
        required=False, strip=True, widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Stored sealed; it is never shown again, only its fingerprint.",
    )
    reference = forms.CharField(
        required=False, strip=True, max_length=500,
        help_text="Or the server's own file in the credentials folder: file:<server>.key or file:<server>/<name>.",
    )

    def clean(self):
        data = super().clean()
        if bool(data.get("secret")) == bool(data.get("reference")):
            raise forms.ValidationError("Give either the secret or a reference to it, not both.")
        return data


class ToolForm(forms.Form):
    enabled = forms.BooleanField(required=False)


class PolicyForm(forms.ModelForm):
    class Meta:
        model = ToolPolicy
        fields = ["requires_approval", "approvals_needed", "expiry_seconds"]
        widgets = {"approvals_needed": forms.Select(choices=[(1, "1"), (2, "2 (four eyes)")])}


class BudgetsForm(forms.ModelForm):
    class Meta:
        model = Budgets
        fields = ["tool_calls", "tokens", "seconds"]
        labels = {"tool_calls": "Tool calls", "seconds": "Seconds"}


class GrantForm(forms.Form):
    permission = forms.ChoiceField(choices=[(name, name.replace("_", " ")) for name in GRANTABLE])
    object = forms.CharField(max_length=100, help_text="The tool, the investigation number or the server.")
    holder = forms.CharField(max_length=150, help_text="group:<name> or user:<username>")

    def clean_holder(self):
        kind, _, name = self.cleaned_data["holder"].strip().partition(":")
        if kind == "group":
            holder = Group.objects.filter(name=name).first()
        elif kind == "user":
            holder = User.objects.filter(username=name, is_active=True).first()
        else:
            raise forms.ValidationError("Say group:<name> or user:<username>.")
        if holder is None:
            raise forms.ValidationError(f"There is no {kind} {name!r}.")
        return holder


class RoleForm(forms.Form):
    username = forms.CharField(max_length=150)
    role = forms.ChoiceField(choices=[(role, role) for role in ROLES])

    def clean_username(self):
        person = User.objects.filter(username=self.cleaned_data["username"].strip(), is_active=True).first()
        if person is None:
            raise forms.ValidationError(f"There is no active user {self.cleaned_data['username']!r}.")
        return person
