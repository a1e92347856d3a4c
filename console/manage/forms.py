"""The administration forms: each turns what an admin typed into values, or says, per field, what is wrong."""

from collections.abc import Mapping
from urllib.parse import urlsplit

from django import forms
from django.contrib.auth.models import Group, User
from django.core.validators import URLValidator

from console.manage.administration import (
    BUDGET_FIELDS,
    DELEGATED_SERVER_FIELDS,
    GRANTABLE,
    POLICY_FIELDS,
    SERVER_FIELDS,
    shown,
)
from core.roles import ROLES
from investigations.models import Budgets, ToolPolicy
from toolserver import egress
from toolserver.adapters import adapter_class, adapter_names
from toolserver.adapters.base import Backend
from toolserver.models import Tool, ToolServer
from toolserver.supervisor import allowed_backend_hosts


def check_backend_url(url: str, schemes: Mapping[str, int] = Backend.url_schemes) -> str:
    """A backend's base URL: one of its adapter's schemes (http(s) unless it says otherwise), a host,
    and no user name, password, query or fragment in it (a credential belongs in the credential,
    where it is sealed, not in a URL shown on pages)."""
    url = url.strip()
    if not url:
        return ""
    example = (
        "https://edr.example.com/api"
        if "https" in schemes
        else " or ".join(f"{scheme}://host[:{port}]" for scheme, port in schemes.items())
    )
    URLValidator(schemes=list(schemes), message=f"Enter the backend's base URL, e.g. {example}")(url)
    parts = urlsplit(url)
    try:  # Django's check lets a port past 65535 through; the allow-list check reads it (check_allowed_host)
        _ = parts.port  # reading it raises ValueError when it is out of range
    except ValueError:
        raise forms.ValidationError("Its port must be a number from 1 to 65535.") from None
    if parts.username or parts.password:
        raise forms.ValidationError("Leave the user name and password out of the URL: set them as the credential.")
    if parts.query or parts.fragment:
        raise forms.ValidationError("The base URL takes no query (?…) or fragment (#…).")
    return url.rstrip("/")


def check_allowed_host(url: str, server: str, schemes: Mapping[str, int] = Backend.url_schemes) -> None:
    """The URL's host passes the deployment's allow-list (toolserver.egress), said at once to the admin."""
    parts = urlsplit(url)
    port = parts.port or schemes[parts.scheme]
    try:
        egress.check_listed(egress.parse(allowed_backend_hosts(server)), parts.hostname, port)
    except egress.EgressRefused as exc:
        raise forms.ValidationError(f"{exc}: ask whoever deploys Gatehouse to list it.") from None


def seen_field() -> forms.CharField:
    """What the page showed of the row its form saves every field of (administration.shown): the save is made
    against it. Each form names its own (`settings_seen`, `policy_seen`, `budgets_seen`), never `seen`: that is the
    credential form's and the listing's, on the same pages."""
    return forms.CharField(widget=forms.HiddenInput, max_length=64)


class DelegatedServerForm(forms.ModelForm):
    """What whoever holds `manage_toolserver` on a server may change (administration.DELEGATED_SERVER_FIELDS)."""

    settings_seen = seen_field()

    class Meta:
        model = ToolServer
        fields = list(DELEGATED_SERVER_FIELDS)
        labels = {"rate_limit_calls": "Calls per window", "rate_limit_window_s": "Window (seconds)"}

    def __init__(self, data=None, *args, instance: ToolServer, **kwargs):
        super().__init__(data, *args, instance=instance, **kwargs)
        self.fields["settings_seen"].initial = shown(instance)


class ServerForm(DelegatedServerForm):
    """The admin's: where the server points too, and the parameters its adapter declares.

    Each declared parameter (toolserver.adapters.base.Param) is a field `param_<name>`, for the
    adapter being saved (the one typed, when it is known). A secret one is write-only: never
    rendered back, kept when left blank. cleaned_data carries them as `params` (every plain one)
    and `secret_params` (only the secret ones typed now), for administration.update_server.
    """

    PREFIX = "param_"

    class Meta(DelegatedServerForm.Meta):
        fields = list(SERVER_FIELDS)
        labels = {**DelegatedServerForm.Meta.labels, "url": "Backend URL"}
        help_texts = {
            "url": "Changing the adapter or URL revokes the credential and the secret parameters: set them again for the new backend."
        }

    def __init__(self, data=None, *args, instance: ToolServer, **kwargs):
        super().__init__(data, *args, instance=instance, **kwargs)
        typed = (data or {}).get("adapter", "").strip()
        self.adapter = adapter_class(instance.name, typed) or adapter_class(instance.name, instance.adapter)
        for param in self.declared:
            if param.secret:
                kept = param.name in instance.bound_secret_params and typed in ("", instance.adapter)
                self.fields[self.PREFIX + param.name] = forms.CharField(
                    label=param.label,
                    required=False,
                    strip=True,
                    widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
                    help_text=("Set; leave blank to keep it. " if kept else "Secret: sealed, never shown again. ")
                    + param.help,
                )
            else:
                self.fields[self.PREFIX + param.name] = forms.CharField(
                    label=param.label,
                    required=False,
                    strip=True,
                    max_length=param.max_length,
                    initial=instance.params.get(param.name, ""),
                    help_text=param.help,
                )

    @property
    def declared(self):
        return self.adapter.params if self.adapter is not None else ()

    def clean_adapter(self):
        adapter = self.cleaned_data["adapter"].strip()
        known = adapter_names(self.instance.name)
        if adapter not in known:
            raise forms.ValidationError(
                f"Unknown adapter {adapter!r} for {self.instance.name}: choose one of {', '.join(known)}."
            )
        return adapter

    def clean_url(self):
        schemes = (self.adapter or Backend).url_schemes  # the adapter typed: an LDAP one takes ldap(s)://
        url = check_backend_url(self.cleaned_data["url"], schemes)
        if url:
            check_allowed_host(url, self.instance.name, schemes)
        return url

    def clean(self):
        data = super().clean()
        # A secret set before stays only while the server points where it was set for.
        same_backend = (data.get("adapter"), data.get("url")) == (self.instance.adapter, self.instance.url)
        params, secret_params = {}, {}
        for param in self.declared:
            field = self.PREFIX + param.name
            value = data.pop(field, None)
            if value is None:  # the field has its own error already
                continue
            try:
                if param.secret:
                    kept = param.name in self.instance.bound_secret_params and same_backend
                    if value or not kept:
                        checked = param.check(value)
                        if checked:
                            secret_params[param.name] = checked
                else:
                    params[param.name] = param.check(value)
            except ValueError as exc:
                self.add_error(field, str(exc))
        data["params"], data["secret_params"] = params, secret_params
        return data


class CredentialForm(forms.Form):
    secret = forms.CharField(
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Stored sealed; it is never shown again, only its fingerprint.",
    )
    reference = forms.CharField(
        required=False,
        strip=True,
        max_length=500,
        help_text="Or the server's own file in the credentials folder: file:<server>.key or file:<server>/<name>.",
    )
    # Where the page showed the server pointing (ToolServer.pointed_at): the secret typed is for that backend.
    seen = forms.CharField(widget=forms.HiddenInput, max_length=64)

    def clean(self):
        data = super().clean()
        if bool(data.get("secret")) == bool(data.get("reference")):
            raise forms.ValidationError("Give either the secret or a reference to it, not both.")
        return data


class ToolForm(forms.Form):
    enabled = forms.BooleanField(required=False)
    tool_seen = seen_field()

    def __init__(self, data=None, *, instance: Tool):
        super().__init__(data, initial={"enabled": instance.enabled, "tool_seen": shown(instance)})


class PolicyForm(forms.ModelForm):
    policy_seen = seen_field()

    class Meta:
        model = ToolPolicy
        fields = list(POLICY_FIELDS)
        widgets = {"approvals_needed": forms.Select(choices=[(1, "1"), (2, "2 (four eyes)")])}

    def __init__(self, data=None, *, instance: ToolPolicy):
        super().__init__(data, instance=instance)
        self.fields["policy_seen"].initial = shown(instance)


class BudgetsForm(forms.ModelForm):
    budgets_seen = seen_field()

    class Meta:
        model = Budgets
        fields = list(BUDGET_FIELDS)
        labels = {"tool_calls": "Tool calls", "seconds": "Seconds"}

    def __init__(self, data=None, *, instance: Budgets):
        super().__init__(data, instance=instance)
        self.fields["budgets_seen"].initial = shown(instance)


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


class ExternalServerForm(forms.Form):
    """An external MCP server: registered (with its name) or changed (without). cleaned_data is what
    administration.register_external_server / update_server take; they check the launch itself."""

    name = forms.CharField(max_length=32, help_text="a-z, 0-9 and '-': its tools are named <name>__<tool>.")
    transport = forms.ChoiceField(choices=ToolServer.Transport.choices, initial=ToolServer.Transport.STDIO)
    command = forms.CharField(max_length=500, required=False, help_text="stdio: the program, e.g. node or uvx.")
    args = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False, help_text="stdio: one per line.")
    cwd = forms.CharField(max_length=500, required=False, label="Working directory")
    env = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        required=False,
        label="Variables",
        help_text="stdio: NAME=value, one per line; the only ones it gets besides PATH. Not for secrets: "
        "set the credential.",
    )
    credential_env = forms.CharField(
        max_length=100, required=False, label="Credential variable", help_text="stdio: e.g. FALCON_CLIENT_SECRET."
    )
    url = forms.CharField(max_length=500, required=False, label="URL", help_text="Streamable HTTP: its endpoint.")
    credential_header = forms.CharField(max_length=100, required=False, help_text="HTTP: e.g. Authorization.")
    timeout_s = forms.IntegerField(min_value=1, max_value=600, initial=30, label="Timeout (seconds)")
    rate_limit_calls = forms.IntegerField(min_value=1, initial=60, label="Calls per window")
    rate_limit_window_s = forms.IntegerField(min_value=1, max_value=86_400, initial=60, label="Window (seconds)")
    enabled = forms.BooleanField(
        required=False, help_text="Off: none of its tools is called (each answers tool_disabled)."
    )
    settings_seen = seen_field()

    def __init__(self, data=None, *, instance: ToolServer | None = None):
        initial = None
        if instance is not None:
            initial = {
                field: getattr(instance, field) for field in self.base_fields if field not in ("name", "settings_seen")
            }
            initial["args"] = "\n".join(instance.args)
            initial["env"] = "\n".join(f"{name}={value}" for name, value in instance.env.items())
            initial["settings_seen"] = shown(instance)
        super().__init__(data, initial=initial)
        if instance is not None:
            del self.fields["name"]
        else:
            del self.fields["enabled"]  # a new server is on; its tools wait for an admin to accept each anyway
            del self.fields["settings_seen"]  # nor has it settings anyone was shown

    def clean_args(self) -> list[str]:
        return [line.strip() for line in self.cleaned_data["args"].splitlines() if line.strip()]

    def clean_env(self) -> dict[str, str]:
        env = {}
        for line in self.cleaned_data["env"].splitlines():
            if not line.strip():
                continue
            name, equals, value = line.strip().partition("=")
            if not equals:
                raise forms.ValidationError("Each line is NAME=value.")
            env[name.strip()] = value.strip()
        return env


class AcceptExternalToolForm(forms.Form):
    """An external tool's acceptance: read or write (the server's hints are shown beside it, not used),
    and for a write the arguments naming its target."""

    access = forms.ChoiceField(
        choices=[("read", "Read: it changes nothing"), ("write", "Write: an analyst approves each call")],
        widget=forms.RadioSelect,
    )
    target_args = forms.MultipleChoiceField(
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="Its target",
        help_text="A write's arguments naming what it acts on (the host, the account): with the action and the "
        "alert, its idempotency key. None: one per alert.",
    )

    def __init__(self, data=None, *, properties: list[str]):
        super().__init__(data)
        self.fields["target_args"].choices = [(name, name) for name in properties]
