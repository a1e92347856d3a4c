"""What an admin changes: tool servers, their credentials, tools, approval policies, budgets and grants.

Each change is one function here: it saves the change, records it in the audit trail (who,
what, before and after; a credential only as its fingerprint or reference, a secret parameter
only by name), and when it changes how a server starts (adapter, URL, parameters, credential) it
stops the processes that run the old configuration once the change is committed. Views and the
API validate input (console.manage.forms) and call these.
"""

from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables
from guardian.models import GroupObjectPermission, UserObjectPermission
from guardian.shortcuts import assign_perm, remove_perm

from console.models import RoleRequest
from core.roles import ADMIN, ROLES, has_role
from investigations.audit import chain as audit
from investigations.models import Budgets, Investigation, ToolPolicy
from toolserver import credentials, egress, external
from toolserver.adapters import adapter_class
from toolserver.adapters.base import ParamError
from toolserver.audit import result_digest
from toolserver.config import find_tool
from toolserver.models import Credential, Tool, ToolServer, fields_digest
from toolserver.supervisor import allowed_backend_hosts, get_supervisor, restart_everywhere

# What whoever holds `manage_toolserver` on a server may change; where it points, and its
# credential, only the admin role may (a credential is bound to where it was set for).
DELEGATED_SERVER_FIELDS = ("enabled", "rate_limit_calls", "rate_limit_window_s")
BACKEND_FIELDS = ("adapter", "url")
SERVER_FIELDS = BACKEND_FIELDS + DELEGATED_SERVER_FIELDS
# How an external server starts: changing any of these is pointing it elsewhere (its credential is revoked).
EXTERNAL_LAUNCH_FIELDS = ToolServer.LAUNCH_FIELDS
EXTERNAL_FIELDS = (*EXTERNAL_LAUNCH_FIELDS, "timeout_s")
POLICY_FIELDS = ("requires_approval", "approvals_needed", "expiry_seconds")
BUDGET_FIELDS = ("tool_calls", "tokens", "seconds")


class Refused(Exception):
    """A change that cannot be made; the message says why, for the admin."""


class ChangedSince(Refused):
    """A change made against what has changed since the admin was shown it: they see it as it is now first."""


# What each page's form saves, every field of it each time: a save is made against them as its page showed them
# (shown), so it does not put back what another admin changed meanwhile.
SEEN_FIELDS = {
    ToolServer: ToolServer.SETTINGS_FIELDS,
    Tool: ("enabled",),
    ToolPolicy: POLICY_FIELDS,
    Budgets: BUDGET_FIELDS,
}


def shown(row) -> str:
    """What a page shows of `row` (its SEEN_FIELDS) as a digest: its form sends it back (a hidden `<...>_seen`), and
    the save is refused (ChangedSince, _lock_as_seen) if they have changed since."""
    return fields_digest(row, SEEN_FIELDS[type(row)])


def _lock_as_seen(row, seen: str, what: str, queryset=None) -> None:
    """Re-read `row` under its lock, till commit, from `queryset` (its model's by default). `seen`: what the admin's
    page showed of it (shown); blank where only the fields given are saved (the API). Refused if it differs now:
    the page's every field would be saved and put back another admin's change. `what`: its fields, in the message."""
    row.refresh_from_db(from_queryset=queryset if queryset is not None else type(row).objects.select_for_update())
    if seen and seen != shown(row):
        raise ChangedSince(
            f"{what} were changed by someone else since your page showed them: nothing was saved. "
            "Here they are as they are now; make your change again."
        )


def actor(user) -> str:
    return f"user:{user.get_username()}"


def may_manage(user, server: ToolServer) -> bool:
    """The admin role manages every server; anyone else needs `manage_toolserver` on this one."""
    return has_role(user, ADMIN) or user.has_perm("toolserver.manage_toolserver", server)


def may_change_backend(user) -> bool:
    """Where a server points and the credential it holds: the admin role only."""
    return has_role(user, ADMIN)


def _require_backend_rights(user, server: ToolServer) -> None:
    if not may_change_backend(user):
        raise PermissionDenied(f"Only admins change where {server.name} points and its credential.")


def _snapshot(row, fields) -> dict:
    return {name: getattr(row, name) for name in fields}


def _recorded(name: str, value):
    """An external server's variables are recorded by name: a value an admin typed there stays out of the trail."""
    return sorted(value) if name == "env" and isinstance(value, dict) else value


def _save_changes(row, user, what: str, changes: dict, fields, **where) -> dict:
    """Apply `changes` to `row`; record the fields that changed. Returns them (empty: nothing changed)."""
    before = _snapshot(row, fields)
    for name, value in changes.items():
        setattr(row, name, value)
    after = _snapshot(row, fields)
    changed = {name for name in fields if before[name] != after[name]}
    if changed:  # only these fields: a concurrent change of another (a credential set meanwhile) stands
        row.save(update_fields=[*sorted(changed), "updated_at"])
        audit.record_admin_change(
            actor(user),
            what,
            before={name: _recorded(name, before[name]) for name in sorted(changed)},
            after={name: _recorded(name, after[name]) for name in sorted(changed)},
            **where,
        )
    return changed


# -- servers and credentials ------------------------------------------------------------------------
@sensitive_variables("changes", "secret_params")
@transaction.atomic
def update_server(server: ToolServer, user, changes: dict, *, seen: str = "") -> set[str]:
    """A server pointed elsewhere (adapter or URL) loses its credential and its secret parameters:
    the admin sets them again. Its adapter's parameters (`params`, and `secret_params` typed now,
    sealed here) are the admin role's to change, like where it points. `seen`: its settings as the admin's
    page showed them (shown), refused (ChangedSince) if another admin has changed them since."""
    # Compared, saved and revoked on the row as it stands, locked till commit, not the caller's copy (read before
    # the form was even validated): a credential or secret parameter another admin set meanwhile is revoked too.
    _lock_as_seen(
        server,
        seen,
        f"{server.name}'s settings",
        ToolServer.objects.select_for_update(of=("self",)).select_related("credential"),
    )
    changes = dict(changes)
    secret_params = changes.pop("secret_params", None) or {}
    backend_fields = (*BACKEND_FIELDS, *EXTERNAL_FIELDS) if server.kind == ToolServer.Kind.EXTERNAL else BACKEND_FIELDS
    if secret_params or any(
        changes.get(name, getattr(server, name)) != getattr(server, name) for name in (*backend_fields, "params")
    ):
        _require_backend_rights(user, server)
    adapter = adapter_class(server.name, changes.get("adapter", server.adapter))
    if "params" in changes and adapter is not None:  # as the form checks them, for every other caller too
        try:
            changes["params"] = adapter.check_params(changes["params"], plain_only=True)
        except ParamError as exc:
            raise Refused(str(exc)) from None
    if server.kind == ToolServer.Kind.EXTERNAL:
        _check_external(
            server.name,
            {name: changes.get(name, getattr(server, name)) for name in (*EXTERNAL_FIELDS, "url")},
            new_url=changes.get("url", server.url) != server.url,
        )
    elif set(changes) & set(EXTERNAL_FIELDS):
        raise Refused(f"{server.name} is a built-in server: it has no command, transport or variables to set")
    changed = _save_changes(server, user, "server_changed", changes, ToolServer.SETTINGS_FIELDS, server=server.name)
    if changed & {*BACKEND_FIELDS, *EXTERNAL_LAUNCH_FIELDS}:
        credential = server.credential
        if credential is not None and not credential.revoked_at:
            _revoke(server, credential, user, because="the server now points elsewhere")
        if server.secret_params:
            _set_secret_params(server, user, {}, replace=True, because="the server now points elsewhere")
    if secret_params:
        _set_secret_params(server, user, secret_params)
        changed = changed | {"secret parameters"}
    if changed & {*BACKEND_FIELDS, *EXTERNAL_FIELDS, "params", "secret parameters"}:
        transaction.on_commit(lambda: restart_everywhere(server.name))
    return changed


@transaction.atomic
def register_external_server(user, fields: dict) -> ToolServer:
    """An admin registers an MCP server of their own: a command over stdio or a Streamable HTTP URL.

    It starts with no tools the model may use: discover() pins what it lists, and each tool waits for
    an admin to accept and classify it (accept_external_tool). Its credential is set like a built-in's
    (set_credential), bound to this launch.
    """
    if not may_change_backend(user):
        raise PermissionDenied("Only admins register tool servers.")
    name = str(fields.get("name", ""))
    if not external.SERVER_NAME.match(name):
        raise Refused("A server's name is 1-32 of a-z, 0-9 and '-', starting and ending with a letter or digit.")
    if ToolServer.objects.filter(name=name).exists():
        raise Refused(f"There is already a tool server named {name}.")
    values = {
        "transport": ToolServer.Transport.STDIO,
        "args": [],
        "env": {},
        "rate_limit_calls": 60,
        "rate_limit_window_s": 60,
        **{key: value for key, value in fields.items() if key != "name"},
    }
    unknown = set(values) - {*EXTERNAL_FIELDS, *DELEGATED_SERVER_FIELDS, "url"}
    if unknown:
        raise Refused(f"Not a setting of an external server: {', '.join(sorted(unknown))}")
    _check_external(name, values)
    server = ToolServer(name=name, kind=ToolServer.Kind.EXTERNAL, adapter=f"mcp-{values['transport']}", **values)
    server.full_clean(exclude=["credential"])
    server.save()
    audit.record_admin_change(
        actor(user),
        "server_registered",
        server=name,
        before={},
        after={
            field: _recorded(field, getattr(server, field)) for field in ("kind", "url", *EXTERNAL_FIELDS, "enabled")
        },
    )
    return server


def _check_external(name: str, values: dict, *, new_url: bool = True) -> None:
    """An external server's launch, refused (Refused, naming the field) unless it is one we can run safely."""
    transport = values.get("transport")
    if transport == ToolServer.Transport.STDIO:
        if not str(values.get("command") or "").strip():
            raise Refused("A stdio server needs its command.")
        args = values.get("args") or []
        if not isinstance(args, list) or not all(isinstance(arg, str) for arg in args):
            raise Refused("Its arguments are a list of strings.")
        env = values.get("env") or {}
        if not isinstance(env, dict) or not all(isinstance(value, str) for value in env.values()):
            raise Refused("Its variables are {NAME: value}, each value a string.")
        for variable in [*env, *([values["credential_env"]] if values.get("credential_env") else [])]:
            problem = external.env_name_problem(str(variable))
            if problem:
                raise Refused(problem)
        if values.get("credential_env") in env:
            raise Refused(f"{values['credential_env']} is its credential's variable: set the credential instead.")
    elif transport == ToolServer.Transport.HTTP:
        url = str(values.get("url") or "")
        try:  # an unreadable host or port ("[::1", ":99999") is the admin's to correct; the URL is not repeated
            parts = urlsplit(url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise Refused("Its URL's host or port cannot be read: give its http(s) URL.") from None
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
            raise Refused("A Streamable HTTP server needs its http(s) URL, with no user or password in it.")
        # As a built-in's base URL: the URL is shown on pages and in the trail. One registered before keeps working
        # (switched off, its rate changed) until it is pointed elsewhere.
        if new_url and (parts.query or parts.fragment):
            raise Refused("Its URL takes no query (?…) or fragment (#…): a key belongs in its credential.")
        try:
            egress.check_listed(egress.parse(allowed_backend_hosts(name)), parts.hostname, port)
        except egress.EgressRefused as exc:
            raise Refused(f"{exc}: ask whoever deploys Gatehouse to list it.") from None
        header = str(values.get("credential_header") or "")
        if header and not external.HEADER_NAME.match(header):
            raise Refused(f"{header!r} is not a header name.")
    else:
        raise Refused("The transport is stdio or http.")


@sensitive_variables("values", "sealed")
def _set_secret_params(server: ToolServer, user, values: dict, *, replace: bool = False, because: str = "") -> None:
    """Seal `values` ({name: secret}) into the server's secret parameters (all of them, when `replace`).

    The audit record names the parameters set before and after, never a value nor its token.
    """
    before = server.secret_params_set
    try:
        sealed = {name: credentials.seal(value, settings.CREDENTIALS_KEY) for name, value in values.items()}
    except credentials.CredentialError as exc:
        raise Refused(f"{exc}: secret parameters cannot be stored") from None
    # Only those set for where it points now are kept: binding every one here would bind one set for elsewhere.
    server.secret_params = sealed if replace else {**server.bound_secret_params, **sealed}
    server.secret_params_for = server.pointed_at() if server.secret_params else ""
    server.save(update_fields=["secret_params", "secret_params_for", "updated_at"])
    after = {"secret_params": server.secret_params_set, **({"because": because} if because else {})}
    if values:
        after["set_now"] = sorted(values)
    audit.record_admin_change(
        actor(user),
        "secret_params_set" if values else "secret_params_unset",
        server=server.name,
        before={"secret_params": before},
        after=after,
    )


@sensitive_variables("secret", "sealed")
@transaction.atomic
def set_credential(server: ToolServer, user, *, secret: str = "", reference: str = "", seen: str = "") -> Credential:
    """Set or rotate `server`'s credential: a secret, sealed here, or a reference to its own file in
    the credentials folder. It is bound to where the server points now (adapter and URL; an external server's
    launch too), read under the row's lock; `seen`: where the admin's page showed it pointing
    (ToolServer.pointed_at), refused if another admin has pointed it elsewhere since."""
    _require_backend_rights(user, server)
    now = ToolServer.objects.select_for_update(of=("self",)).select_related("credential").get(pk=server.pk)
    if seen and not now.points_at(seen):
        raise Refused(
            f"{server.name} was pointed elsewhere since your page showed it: check where it points now, then set "
            "its credential again."
        )
    before = now.credential_shown
    secret = secret.strip()
    bound = {"adapter": now.adapter, "url": now.url, "launch": now.launch_digest(), "set_by": user.get_username()}
    if secret:
        try:
            sealed = credentials.seal(secret, settings.CREDENTIALS_KEY)
        except credentials.CredentialError as exc:
            raise Refused(f"{exc}; set it, or give a file in the credentials folder instead") from None
        credential = Credential.objects.create(
            server=server,
            kind=Credential.Kind.SEALED,
            sealed=sealed,
            fingerprint=credentials.fingerprint(secret),
            **bound,
        )
    else:
        try:
            reference = credentials.check_reference(reference, server.name, settings.CREDENTIALS_DIR)
        except ValueError as exc:
            raise Refused(str(exc)) from None
        credential = Credential.objects.create(
            server=server, kind=Credential.Kind.REFERENCE, reference=reference, **bound
        )
    server.credential = credential
    server.save(update_fields=["credential", "updated_at"])
    audit.record_admin_change(
        actor(user),
        "credential_set",
        server=server.name,
        before={"credential": before},
        after={"credential": server.credential_shown},
    )
    transaction.on_commit(lambda: restart_everywhere(server.name))
    return credential


@transaction.atomic
def revoke_credential(server: ToolServer, user) -> None:
    """The server gets no credential: its processes stop now, and it starts again only with a new one."""
    _require_backend_rights(user, server)
    credential = server.credential
    if credential is None or credential.revoked_at:
        raise Refused(f"{server.name} has no credential set here to revoke")
    _revoke(server, credential, user)
    transaction.on_commit(lambda: restart_everywhere(server.name))


def _revoke(server: ToolServer, credential: Credential, user, because: str = "") -> None:
    credential.revoked_at, credential.revoked_by = timezone.now(), user.get_username()
    credential.save(update_fields=["revoked_at", "revoked_by"])
    after = {"credential": server.credential_shown, **({"because": because} if because else {})}
    audit.record_admin_change(
        actor(user), "credential_revoked", server=server.name, before={"credential": credential.shown}, after=after
    )


def reseal_credentials(by: str = "system") -> tuple[list[str], list[str]]:
    """Seal every stored credential (and secret parameter) again under the first GATEHOUSE_CREDENTIALS_KEY.

    After a key is put first in the list, this leaves nothing in the database that needs the old
    ones, so they can be removed. The secrets and their fingerprints stay the same. Returns
    (resealed, unopenable), each as "server: fingerprint …"; an unopenable one is left as it is.
    """
    done, unopenable = [], []
    for credential in Credential.objects.filter(kind=Credential.Kind.SEALED).select_related("server"):
        try:
            resealed = credentials.reseal(credential.sealed, settings.CREDENTIALS_KEY)
        except credentials.CredentialError:
            unopenable.append(str(credential))
            continue
        # Compare and set: of two runs at once, the second writes nothing over the first.
        if Credential.objects.filter(pk=credential.pk, sealed=credential.sealed).update(sealed=resealed):
            done.append(str(credential))
    for server in ToolServer.objects.exclude(secret_params={}):
        try:
            resealed = {
                name: credentials.reseal(token, settings.CREDENTIALS_KEY)
                for name, token in server.secret_params.items()
            }
        except credentials.CredentialError:
            unopenable.append(f"{server.name}: secret parameters")
            continue
        if ToolServer.objects.filter(pk=server.pk, secret_params=server.secret_params).update(secret_params=resealed):
            done.append(f"{server.name}: secret parameters {', '.join(sorted(resealed))}")
    if done:
        audit.record_admin_change(by, "credentials_resealed", before={}, after={"credentials": done})
    return done, unopenable


# -- tools and their discovery ----------------------------------------------------------------------
@transaction.atomic
def update_tool(tool: Tool, user, *, enabled: bool, seen: str = "") -> set[str]:
    """`seen`: its switch as the admin's page showed it (shown), refused (ChangedSince) if changed since."""
    _lock_as_seen(
        tool,
        seen,
        f"{tool.name}'s switch settings",
        Tool.objects.select_for_update(of=("self",)).select_related("server"),
    )
    return _save_changes(
        tool, user, "tool_changed", {"enabled": enabled}, ("enabled",), server=tool.server.name, tool=tool.name
    )


def _lock_listing_seen(tool: Tool, seen: str) -> None:
    """Re-read `tool` under its row's lock; its listing waiting must be the one the admin was shown (`seen`:
    Tool.proposed_digest as their page or the API showed it), not one a discovery has put in its place since."""
    tool.refresh_from_db(from_queryset=Tool.objects.select_related("server").select_for_update(of=("self",)))
    if tool.proposed is None:
        raise Refused(f"{tool.name} has no listing waiting")
    if seen != tool.proposed_digest():
        raise Refused(
            f"{tool.name}'s server has listed it differently since you were shown its listing: review the listing "
            "waiting now, then accept it."
        )


@transaction.atomic
def accept_tool_change(tool: Tool, user, *, seen: str) -> None:
    """The server's new description and schema, as `seen` (_lock_listing_seen), become what the model is offered."""
    _lock_listing_seen(tool, seen)
    before = {"description": tool.description, "input_schema_sha256": result_digest(tool.input_schema)}
    tool.description = tool.proposed["description"]
    tool.input_schema = tool.proposed["input_schema"]
    tool.proposed = None
    tool.save()
    audit.record_admin_change(
        actor(user),
        "tool_change_accepted",
        server=tool.server.name,
        tool=tool.name,
        before=before,
        after={"description": tool.description, "input_schema_sha256": result_digest(tool.input_schema)},
    )


@transaction.atomic
def accept_external_tool(
    tool: Tool, user, *, seen: str, access: str, target_args: list[str] | tuple[str, ...] = ()
) -> None:
    """An external tool as its server listed it, the listing the admin was shown (`seen`: _lock_listing_seen),
    becomes what the model is offered, read or write as the admin says (the server's hints were shown, not
    trusted). A write names the arguments that identify its target: with the action and the alert they make
    its idempotency key; none: the alert."""
    _require_backend_rights(user, tool.server)
    if tool.server.kind != ToolServer.Kind.EXTERNAL:
        raise Refused(f"{tool.name} is a built-in tool: accept its change with accept_tool_change")
    _lock_listing_seen(tool, seen)
    if access not in (Tool.Access.READ, Tool.Access.WRITE):
        raise Refused("Classify the tool as read or write.")
    problem = external.schema_problem(tool.proposed["input_schema"])
    if problem:
        raise Refused(f"{tool.name}: {problem}")
    # A target is part of the write's idempotency key, so every call must carry it: required arguments only.
    required = set((tool.proposed["input_schema"] or {}).get("required") or [])
    targets = list(target_args) if access == Tool.Access.WRITE else []
    if set(targets) - required:
        raise Refused(
            f"Not a required argument of {tool.name} (a target must be in every call): "
            f"{', '.join(sorted(set(targets) - required))}"
        )
    before = _external_shown(tool)
    tool.description = tool.proposed["description"]
    tool.input_schema = tool.proposed["input_schema"]
    tool.output_schema = tool.proposed.get("output_schema")
    tool.annotations = tool.proposed.get("annotations") or {}
    tool.access, tool.target_args, tool.proposed = access, targets, None
    tool.save()
    audit.record_admin_change(
        actor(user),
        "tool_accepted",
        server=tool.server.name,
        tool=tool.name,
        before=before,
        after=_external_shown(tool),
    )
    if access == Tool.Access.WRITE:  # its approval policy, approvable by analysts like every write's
        from investigations.approvals.services import ensure_policies

        ensure_policies()


def _external_shown(tool: Tool) -> dict:
    return _listing_shown(
        {"description": tool.description, "input_schema": tool.input_schema, "annotations": tool.annotations}
    ) | {
        "access": tool.access or "unclassified (a write)",
        "target_args": tool.target_args,
    }


def discover(server: ToolServer, by: str = "system") -> list[str]:
    """List `server`'s tools from a process of its own and pin each listing (_pin).

    A tool whose listing changed, or one not seen before, waits for an admin, and answers
    tool_disabled until then. An external server's listing is pinned whole (output schema and
    annotations too), under `<server>__<tool>`; a tool whose name would not make one is skipped, and
    said so in the audit record. Returns the names of the tools found changed or new.
    """
    listed = get_supervisor().list_tools(server.name, keep_running=False)
    outside = server.kind == ToolServer.Kind.EXTERNAL
    found, skipped = [], []
    with transaction.atomic():
        for advertised in listed:
            name = external.tool_name(server.name, advertised["name"]) if outside else advertised["name"]
            if name is None:
                skipped.append(str(advertised["name"])[:100])
                continue
            offered = {"description": advertised["description"] or "", "input_schema": advertised["input_schema"]}
            if outside:
                offered = {
                    **offered,
                    "input_schema": offered["input_schema"] or {},
                    "output_schema": advertised.get("output_schema"),
                    "annotations": advertised.get("annotations") or {},
                }
            if _pin(server, name, advertised["name"] if outside else "", offered, by):
                found.append(name)
        if skipped:
            audit.record_admin_change(
                by, "tools_skipped", server=server.name, before={}, after={"invalid_tool_names": skipped}
            )
    return found


def _pin(server: ToolServer, name: str, remote_name: str, offered: dict, by: str) -> bool:
    """Compare `offered` (a tool's listing: the Tool fields it names) with what was accepted; a new or
    changed one waits in `proposed` (the page shows the difference), recorded once. Whether it did."""
    tool = Tool.objects.select_for_update().filter(name=name, server=server).first()
    if tool is None:
        tool = Tool.objects.create(server=server, name=name, remote_name=remote_name, description="", input_schema={})
    tool.discovered_at = timezone.now()
    accepted = {field: getattr(tool, field) for field in offered}
    if accepted == offered or tool.proposed == offered:
        tool.proposed = None if accepted == offered else tool.proposed
        tool.save(update_fields=["discovered_at", "proposed", "updated_at"])
        return False
    tool.proposed = offered
    tool.save(update_fields=["discovered_at", "proposed", "updated_at"])
    audit.record_admin_change(
        by,
        "tool_change_found",
        server=server.name,
        tool=tool.name,
        before=_external_shown(tool) if remote_name else _listing_shown(accepted),
        after=_listing_shown(offered),
    )
    return True


def _listing_shown(listing: dict) -> dict:
    """A listing as the trail keeps it: the description, the schema's digest, an external tool's hints."""
    shown = {"description": listing["description"], "input_schema_sha256": result_digest(listing["input_schema"])}
    if "annotations" in listing:
        shown["hints"] = external.hints(listing["annotations"])
    return shown


# -- policies and budgets ---------------------------------------------------------------------------
@transaction.atomic
def update_policy(policy: ToolPolicy, user, changes: dict, *, seen: str = "") -> set[str]:
    """`seen`: the policy as the admin's page showed it (shown), refused (ChangedSince) if another admin has changed
    it since; the API saves only the fields it is given, and sends none."""
    _lock_as_seen(policy, seen, f"{policy.tool}'s approval settings")
    server, _ = find_tool(policy.tool)
    return _save_changes(policy, user, "policy_changed", changes, POLICY_FIELDS, server=server.name, tool=policy.tool)


@transaction.atomic
def update_budgets(user, changes: dict, *, seen: str = "") -> set[str]:
    """`seen`: the budgets as the admin's page showed them (shown), refused (ChangedSince) if changed since."""
    budgets = Budgets.current()
    _lock_as_seen(budgets, seen, "The budgets")
    return _save_changes(budgets, user, "budgets_changed", changes, BUDGET_FIELDS)


# -- roles ----------------------------------------------------------------------------------------------
def people() -> list[dict]:
    """Everyone active, with their roles and any admin role waiting for a second admin."""
    waiting = {request.user_id: request for request in RoleRequest.objects.select_related("requested_by")}
    return [
        {
            "user": person,
            "roles": sorted(group.name for group in person.groups.all() if group.name in ROLES),
            "waiting": waiting.get(person.pk),
        }
        for person in User.objects.filter(is_active=True).prefetch_related("groups").order_by("username")
    ]


def _may_change_roles(user, person: User, role: str) -> None:
    if not (has_role(user, ADMIN) or user.is_superuser):
        raise PermissionDenied("Only admins change who holds a role.")
    if role not in ROLES:
        raise Refused(f"There is no role {role!r}: {', '.join(ROLES)}.")
    if person.pk == user.pk:
        raise Refused("A change of your own roles needs another admin.")


def _role_record(user, what: str, person: User, role: str, **more) -> None:
    audit.record_admin_change(actor(user), what, before={}, after={"user": person.get_username(), "role": role, **more})


@transaction.atomic
def grant_role(user, person: User, role: str) -> str:
    """Give `person` a role; "granted", or "requested" for the admin role, which a second admin confirms."""
    _may_change_roles(user, person, role)
    if person.groups.filter(name=role).exists():
        raise Refused(f"{person.get_username()} holds {role} already.")
    if role == ADMIN:
        waiting = RoleRequest.objects.select_for_update().filter(user=person, role=role).first()
        if waiting is None:
            RoleRequest.objects.create(user=person, role=role, requested_by=user)
            _role_record(user, "role_requested", person, role)
            return "requested"
        if waiting.requested_by_id == user.pk:
            raise Refused(f"You asked for {person.get_username()}'s admin role: another admin confirms it.")
        waiting.delete()
        person.groups.add(Group.objects.get(name=role))
        _role_record(user, "role_granted", person, role, requested_by=waiting.requested_by.get_username())
        return "granted"
    person.groups.add(Group.objects.get(name=role))
    _role_record(user, "role_granted", person, role)
    return "granted"


@transaction.atomic
def revoke_role(user, person: User, role: str) -> None:
    """Take a role (or an admin role still waiting) from `person`; their open sockets close (console.signals)."""
    _may_change_roles(user, person, role)
    waiting = RoleRequest.objects.filter(user=person, role=role).delete()[0]
    if not person.groups.filter(name=role).exists() and not waiting:
        raise Refused(f"{person.get_username()} does not hold {role}.")
    person.groups.remove(Group.objects.get(name=role))
    _role_record(user, "role_revoked", person, role)


@transaction.atomic
def apply_idp_roles(person: User, roles: set[str], issuer: str) -> None:
    """Single sign-on: the identity provider's groups decide an SSO account's roles at each sign-in
    (console.sso). Each role it gives or takes is one record, by the IdP; taking one closes the
    person's open sockets (console.signals), as an admin's revoke_role does."""
    held = set(person.groups.filter(name__in=ROLES).values_list("name", flat=True))
    by = f"idp:{issuer}"
    for role in sorted(roles - held):
        person.groups.add(Group.objects.get(name=role))
        audit.record_admin_change(by, "role_granted", before={}, after={"user": person.get_username(), "role": role})
    for role in sorted(held - roles):
        person.groups.remove(Group.objects.get(name=role))
        audit.record_admin_change(by, "role_revoked", before={}, after={"user": person.get_username(), "role": role})
    person.__dict__.pop("_gatehouse_roles", None)  # core.roles caches them on the user


# -- object permissions -----------------------------------------------------------------------------
# What an admin grants per object: the permission, the model it is on, and how a page names one.
GRANTABLE = {
    "approve_tool": ("investigations.approve_tool", ToolPolicy, "tool"),
    "view_investigation": ("investigations.view_investigation", Investigation, "pk"),
    "manage_toolserver": ("toolserver.manage_toolserver", ToolServer, "name"),
}


def grantable_object(permission: str, name: str):
    _, model, field = GRANTABLE[permission]
    try:
        return model.objects.get(**{field: name})
    except (model.DoesNotExist, ValueError):
        raise Refused(f"there is no {model._meta.verbose_name} {name!r}") from None


@transaction.atomic
def grant(user, permission: str, obj, holder: User | Group) -> None:
    """Separation of duties: nobody grants a right to themself (nor to a group of theirs); another admin must."""
    if holder == user or (isinstance(holder, Group) and user.groups.filter(pk=holder.pk).exists()):
        raise Refused(f"A grant to yourself needs another admin: ask one to grant {permission.replace('_', ' ')}.")
    assign_perm(GRANTABLE[permission][0], holder, obj)
    _record_grant(user, "permission_granted", permission, obj, holder)


@transaction.atomic
def revoke(user, permission: str, obj, holder: User | Group) -> None:
    remove_perm(GRANTABLE[permission][0], holder, obj)
    _record_grant(user, "permission_revoked", permission, obj, holder)


def _record_grant(user, what: str, permission: str, obj, holder) -> None:
    held_by = f"group:{holder.name}" if isinstance(holder, Group) else f"user:{holder.get_username()}"
    if isinstance(obj, ToolPolicy):
        where = {"tool": obj.tool}
    elif isinstance(obj, ToolServer):
        where = {"server": obj.name}
    else:
        where = {"correlation_id": obj.correlation_id}
    audit.record_admin_change(
        actor(user), what, before={}, after={"permission": permission, "object": str(obj), "holder": held_by}, **where
    )


def grants(permission: str, on=None) -> list[dict]:
    """Who holds `permission` (on `on` only, if given): [{"permission", "object", "holder"}],
    holders as group:<name> or user:<name>."""
    perm, model, field = GRANTABLE[permission]
    where = {"permission__codename": perm.split(".")[1], "content_type": ContentType.objects.get_for_model(model)}
    if on is not None:
        where["object_pk"] = str(on.pk)
    links = [
        (link.object_pk, f"group:{link.group.name}")
        for link in GroupObjectPermission.objects.filter(**where).select_related("group")
    ] + [
        (link.object_pk, f"user:{link.user.get_username()}")
        for link in UserObjectPermission.objects.filter(**where).select_related("user")
    ]
    names = dict(model.objects.filter(pk__in={int(pk) for pk, _ in links}).values_list("pk", field))
    return sorted(
        (
            {"permission": permission, "object": str(names[int(pk)]), "holder": holder}
            for pk, holder in links
            if int(pk) in names
        ),
        key=lambda row: (row["object"], row["holder"]),
    )
