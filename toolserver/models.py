import hashlib
import json

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models


class IdempotencyRecord(models.Model):
    """One privileged write, by its key: claimed before the backend is called, kept after.

    The unique key is the race guard: of many concurrent claims exactly one INSERT succeeds.
    """

    class State(models.TextChoices):
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"  # permanently: returned again, never retried under this key

    key = models.CharField(max_length=64, unique=True)
    server = models.CharField(max_length=40)
    tool = models.CharField(max_length=60)
    target = models.CharField(max_length=300)
    trigger = models.CharField(max_length=200)
    fingerprint = models.CharField(max_length=64, help_text="Hash of the arguments that must match on a repeat.")
    state = models.CharField(max_length=10, choices=State.choices, default=State.RUNNING)
    claim_token = models.CharField(max_length=32)
    lease_until = models.DateTimeField(help_text="A running claim older than this was abandoned by its worker.")
    attempts = models.PositiveIntegerField(default=1)
    result = models.JSONField(null=True, blank=True)
    claimed_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["trigger"])]

    def __str__(self) -> str:
        return f"{self.tool} {self.target} for {self.trigger} ({self.state})"


class ToolServer(models.Model):
    """One tool server (catalog.SERVERS) as the admin configured it: its backend, its switch and its rate.

    Who may change it: the admin role, or whoever holds `manage_toolserver` on this row.
    """

    class Kind(models.TextChoices):
        BUILTIN = "builtin"  # one of catalog.SERVERS, run by toolserver.servers
        EXTERNAL = "external"  # an MCP server an admin registered: a vendor's or the SOC's own

    class Transport(models.TextChoices):
        STDIO = "stdio"
        HTTP = "http"  # Streamable HTTP, at `url`

    # What an external server's process is: a change of any one runs another program (or hands the
    # credential over otherwise), so its credential is bound to them as a built-in's is to its URL.
    LAUNCH_FIELDS = ("transport", "command", "args", "cwd", "env", "credential_env", "credential_header")
    # What its page sets (console.manage.administration.update_server): a save is made against them as the page
    # showed them (administration.shown), so it does not put back what another admin changed meanwhile.
    SETTINGS_FIELDS = (
        "adapter",
        "url",
        "enabled",
        "rate_limit_calls",
        "rate_limit_window_s",
        "params",
        *LAUNCH_FIELDS,
        "timeout_s",
    )

    name = models.CharField(max_length=40, unique=True)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.BUILTIN)
    # An external server's transport (toolserver.external). Its credential is the same sealed,
    # bound Credential as a built-in's; only how its process receives it differs.
    transport = models.CharField(max_length=10, choices=Transport.choices, default=Transport.STDIO)
    command = models.CharField(max_length=500, blank=True, help_text="stdio: the program to run.")
    args = models.JSONField(default=list, blank=True, help_text="stdio: its arguments, a list of strings.")
    cwd = models.CharField(max_length=500, blank=True, help_text="stdio: its working directory.")
    env = models.JSONField(
        default=dict, blank=True, help_text="stdio: {NAME: value}, the only variables it gets besides PATH."
    )
    credential_env = models.CharField(
        max_length=100, blank=True, help_text="stdio: the variable the server reads its credential from."
    )
    credential_header = models.CharField(
        max_length=100, blank=True, help_text="HTTP: the header its credential is sent in."
    )
    timeout_s = models.PositiveIntegerField(
        default=30, validators=[MinValueValidator(1), MaxValueValidator(600)], help_text="Per call, in seconds."
    )
    adapter = models.CharField(
        max_length=40, default="lab", help_text="The backend implementation (toolserver.adapters)."
    )
    url = models.CharField(
        max_length=500, blank=True, help_text="The backend's base URL; blank: the deployment's default."
    )
    enabled = models.BooleanField(default=True, help_text="Off: every tool of this server answers tool_disabled.")
    # The credential it starts with (revoked: none); null: the deployment's default. Read with the
    # server in one query on every call, so a change takes effect without a cache to expire.
    credential = models.ForeignKey("Credential", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # The adapter's declared parameters (toolserver.adapters.base.Param): the plain ones by value;
    # the secret ones each sealed like a credential, shown only by name, bound like the credential
    # (pointing the server elsewhere clears them: console.manage.administration.update_server; a server
    # pointed elsewhere any other way starts without them: bound_secret_params).
    params = models.JSONField(default=dict, blank=True, help_text="{name: value} of the adapter's plain parameters.")
    secret_params = models.JSONField(
        default=dict, blank=True, editable=False, help_text="{name: Fernet token} of the adapter's secret parameters."
    )
    secret_params_for = models.CharField(
        max_length=64,
        blank=True,
        editable=False,
        help_text="Where the server pointed when its secret parameters were set (ToolServer.pointed_at).",
    )
    rate_limit_calls = models.PositiveIntegerField(
        validators=[MinValueValidator(1)], help_text="Calls allowed per window, shared by every worker."
    )
    rate_limit_window_s = models.PositiveIntegerField(
        validators=[MinValueValidator(1), MaxValueValidator(86_400)], help_text="The window, in seconds."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        permissions = [("manage_toolserver", "Can manage this tool server and its credential")]
        constraints = [
            models.CheckConstraint(condition=models.Q(rate_limit_calls__gte=1), name="toolserver_rate_calls_positive"),
            models.CheckConstraint(
                condition=models.Q(rate_limit_window_s__gte=1), name="toolserver_rate_window_positive"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def launch_digest(self) -> str:
        """An external server's launch, as a digest its credential keeps; blank for a built-in (its URL binds it)."""
        if self.kind != self.Kind.EXTERNAL:
            return ""
        return launch_digest({field: getattr(self, field) for field in self.LAUNCH_FIELDS})

    def pointed_at(self) -> str:
        """Where it points (adapter, URL, an external server's launch), as a digest: a page sends back what it
        showed with a credential, which is set only if the server still points there."""
        return backend_digest(self.adapter, self.url, self.launch_digest())

    def points_at(self, digest: str) -> bool:
        """Whether it still points where something was set for (its credential, its secret parameters), whatever
        path changed it since (a revocation missed by a race, an update elsewhere): what is bound there goes
        nowhere else."""
        return digest == self.pointed_at()

    @property
    def bound_secret_params(self) -> dict:
        """Its secret parameters while it points where they were set for; none once it points elsewhere."""
        return self.secret_params if self.points_at(self.secret_params_for) else {}

    @property
    def secret_params_set(self) -> list[str]:
        """What a page, the API or an audit record may say of its secret parameters: which are set."""
        return sorted(self.secret_params)

    @property
    def credential_shown(self) -> str:
        """What a page, the API or an audit record may say of its credential."""
        if self.credential is None:
            return "deployment default"
        return "revoked" if self.credential.revoked_at else self.credential.shown


class Tool(models.Model):
    """A tool as its server advertised it, and as an admin accepted it.

    The model is offered only the accepted description and schema. When a discovery finds them
    changed (a changed description is a prompt change), the server's version waits in `proposed`
    and the tool answers tool_disabled until an admin accepts it.
    """

    server = models.ForeignKey(ToolServer, on_delete=models.CASCADE, related_name="tools")

    class Access(models.TextChoices):
        UNCLASSIFIED = ""  # treated as a write
        READ = "read"
        WRITE = "write"

    # An external server's tool is named "<server>__<its name>" (the Anthropic tool-name pattern;
    # 60 at most, the width of every column that names a tool).
    name = models.CharField(max_length=60, unique=True)
    description = models.TextField()
    input_schema = models.JSONField()
    enabled = models.BooleanField(default=True)
    proposed = models.JSONField(
        null=True,
        blank=True,
        help_text="{description, input_schema[, output_schema, annotations]} awaiting acceptance.",
    )
    # External tools only: the name its server knows it by, what it declared, and what an admin
    # decided at acceptance (its hints are shown, never trusted: unclassified is a write).
    remote_name = models.CharField(max_length=200, blank=True)
    output_schema = models.JSONField(null=True, blank=True)
    annotations = models.JSONField(default=dict, blank=True)
    access = models.CharField(max_length=10, choices=Access.choices, default=Access.UNCLASSIFIED, blank=True)
    target_args = models.JSONField(
        default=list, blank=True, help_text="A write's arguments naming its target: part of its idempotency key."
    )
    discovered_at = models.DateTimeField(null=True, blank=True, help_text="The last time its server listed it.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["server__name", "name"]

    def __str__(self) -> str:
        return self.name

    @property
    def usable(self) -> bool:
        return self.enabled and self.proposed is None and self.server.enabled

    def proposed_digest(self) -> str:
        """The listing waiting (`proposed`, whole), as a digest: a page or an API client sends back the one it
        showed, which is accepted only if it is still the one waiting; blank when none waits."""
        return "" if self.proposed is None else launch_digest(self.proposed)


class Credential(models.Model):
    """A credential a tool server's process gets at start, as GATEHOUSE_BACKEND_KEY.

    Either sealed here (Fernet, under GATEHOUSE_CREDENTIALS_KEY, which never enters the database)
    or a reference to the server's own file in the credentials folder, read by the server's
    launcher. The server's `credential` is the current one; older rows are its history.
    Nothing here can show the secret: a page shows the fingerprint, who set it and when.

    It is bound to the backend it was set for (`adapter`, `url`; an external server's launch too): a server
    pointed anywhere else starts without it (toolserver.config.binding_of), and changing where a server
    points revokes it.
    """

    class Kind(models.TextChoices):
        SEALED = "sealed"
        REFERENCE = "reference"

    server = models.ForeignKey(ToolServer, on_delete=models.CASCADE, related_name="credentials")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    sealed = models.TextField(blank=True, editable=False, help_text="The Fernet token.")
    reference = models.CharField(max_length=500, blank=True)
    fingerprint = models.CharField(max_length=16, blank=True, help_text="Keyed hash of a sealed secret.")
    adapter = models.CharField(max_length=40, help_text="The server's adapter when it was set.")
    url = models.CharField(
        max_length=500, blank=True, help_text="The server's URL when it was set (blank: the deployment's)."
    )
    launch = models.CharField(
        max_length=64, blank=True, help_text="An external server's launch when it was set (ToolServer.launch_digest)."
    )
    set_by = models.CharField(max_length=150)
    set_at = models.DateTimeField(auto_now_add=True)
    revoked_by = models.CharField(max_length=150, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-set_at", "-id"]
        indexes = [models.Index(fields=["server", "-id"])]

    def __str__(self) -> str:
        return f"{self.server.name}: {self.shown}"

    @property
    def shown(self) -> str:
        """What a page or an audit record may say about it."""
        return f"fingerprint {self.fingerprint}" if self.kind == self.Kind.SEALED else self.reference

    def bound_to(self, server: ToolServer) -> bool:
        """Whether `server` still points where this credential was set for, and an external one still runs the
        program it was set for: whatever path changed them (a revocation missed by a race, an update elsewhere)."""
        return server.points_at(backend_digest(self.adapter, self.url, self.launch))

    @property
    def launch_reference(self) -> str:
        return f"sealed:{self.sealed}" if self.kind == self.Kind.SEALED else self.reference


def launch_digest(launch: dict) -> str:
    return hashlib.sha256(json.dumps(launch, sort_keys=True).encode()).hexdigest()


def fields_digest(row, fields) -> str:
    """`row`'s `fields` as one digest: what a page showed of a row whose form saves every field, sent back with the
    save and compared with the row under its lock (console.manage.administration.shown)."""
    return launch_digest({field: getattr(row, field) for field in fields})


def backend_digest(adapter: str, url: str, launch: str) -> str:
    """Where a server points, as one digest: its adapter, its URL and an external server's launch digest."""
    return launch_digest({"adapter": adapter, "url": url, "launch": launch})
