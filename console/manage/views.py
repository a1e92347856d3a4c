"""The administration pages: tool servers and their credentials, tools and their policies, budgets, grants.

The admin role only (403 for anyone else), except a server's own page, which whoever holds
`manage_toolserver` on that server may use too: to switch it, set its rate limit, check its
connection and discover its tools, never to change where it points or its credential. Who is
asking is checked before any input is read. Each POST validates its form, calls one function of
console.manage.administration and redirects back with what happened.
"""

from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST

from console.manage import administration
from console.manage.administration import ChangedSince, Refused
from console.manage.forms import (
    AcceptExternalToolForm,
    BudgetsForm,
    CredentialForm,
    DelegatedServerForm,
    ExternalServerForm,
    GrantForm,
    PolicyForm,
    RoleForm,
    ServerForm,
    ToolForm,
)
from core.roles import ADMIN, has_role
from investigations.models import Budgets, ToolPolicy
from toolserver import external
from toolserver.models import Tool, ToolServer
from toolserver.supervisor import ServerDidNotStart, check_connection


def admin_only(view):
    @login_required
    @wraps(view)
    def check(request, *args, **kwargs):
        if not has_role(request.user, ADMIN):
            raise PermissionDenied
        return view(request, *args, **kwargs)

    return check


def server_manager(view):
    """The view gets the server, once the user may manage it."""

    @login_required
    @wraps(view)
    def check(request, name, *args, **kwargs):
        server = get_object_or_404(ToolServer.objects.select_related("credential"), name=name)
        if not administration.may_manage(request.user, server):
            raise PermissionDenied
        return view(request, server, *args, **kwargs)

    return check


# A page's form saves every field it shows, against what it showed (its hidden `<...>_seen`, administration.shown):
# without it the form would never pass, and the hidden field's error would show nowhere.
UNSAID = "The page did not say which settings it showed: here they are now; save again."


def _again(form, error: str):
    """`form`, unbound (the row as it is now: its fields and its `<...>_seen`), sent back with `error`: what was typed
    would put back another admin's change."""
    form.cleaned_data = {}  # an unbound form has none, and add_error expects them
    form.add_error(None, error)
    return form


@admin_only
@require_POST
def register(request):
    form = ExternalServerForm(request.POST)
    if form.is_valid():
        try:
            server = administration.register_external_server(request.user, form.cleaned_data)
        except Refused as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Registered {server.name}: set its credential, then discover its tools.")
            return redirect("manage:server", server.name)
    return index(request, register_form=form, status=400)


@admin_only
def index(request, budgets_form=None, register_form=None, status=200):
    servers = ToolServer.objects.select_related("credential")
    policies = {policy.tool: policy for policy in ToolPolicy.objects.all()}
    return render(
        request,
        "manage/index.html",
        {
            "servers": servers,
            "tools": [(tool, policies.get(tool.name)) for tool in Tool.objects.select_related("server")],
            "budgets_form": budgets_form or BudgetsForm(instance=Budgets.current()),
            "register_form": register_form or ExternalServerForm(),
        },
        status=status,
    )


@admin_only
@require_POST
def budgets(request):
    form = BudgetsForm(request.POST, instance=Budgets.current())
    if not form.is_valid():
        if "budgets_seen" in form.errors:
            form = _again(BudgetsForm(instance=Budgets.current()), UNSAID)
        return index(request, budgets_form=form, status=400)
    changes = dict(form.cleaned_data)
    seen = changes.pop("budgets_seen")
    try:
        changed = administration.update_budgets(request.user, changes, seen=seen)
    except ChangedSince as exc:
        return index(request, budgets_form=_again(BudgetsForm(instance=Budgets.current()), str(exc)), status=400)
    if changed:
        messages.success(request, "Budgets saved: they apply to investigations started from now on.")
    return redirect("manage:index")


# -- one server ---------------------------------------------------------------------------------
def _server_form(request, server, data=None):
    if server.kind == ToolServer.Kind.EXTERNAL and administration.may_change_backend(request.user):
        return ExternalServerForm(data, instance=server)
    form = ServerForm if administration.may_change_backend(request.user) else DelegatedServerForm
    return form(data, instance=server)


def _server_page(request, server, *, form=None, credential_form=None, status=200):
    return render(
        request,
        "manage/server.html",
        {
            "server": server,
            "form": form or _server_form(request, server),
            "credential_form": credential_form or CredentialForm(initial={"seen": server.pointed_at()}),
            "credential": server.credential,
            "history": server.credentials.order_by("-id")[:10],
            "tools": server.tools.all(),
            "is_admin": has_role(request.user, ADMIN),
        },
        status=status,
    )


@sensitive_post_parameters()  # a secret parameter of the adapter may be among them
@server_manager
def server(request, server):
    if request.method != "POST":
        return _server_page(request, server)
    # The form gets a copy of the row: a ModelForm writes what was typed into its instance, and
    # administration compares it with the row as saved.
    form = _server_form(request, ToolServer.objects.get(pk=server.pk), request.POST)
    if not form.is_valid():
        if "settings_seen" in form.errors:
            form = _server_form_again(request, server, UNSAID)
        return _server_page(request, server, form=form, status=400)
    changes = dict(form.cleaned_data)
    seen = changes.pop("settings_seen")
    try:
        changed = administration.update_server(server, request.user, changes, seen=seen)
    except ChangedSince as exc:  # shown as they are now: what was typed would put back another admin's change
        return _server_page(request, server, form=_server_form_again(request, server, str(exc)), status=400)
    except Refused as exc:
        form.add_error(None, str(exc))
        return _server_page(request, server, form=form, status=400)
    messages.success(request, f"Saved: {', '.join(sorted(changed))}." if changed else "Nothing changed.")
    return redirect("manage:server", server.name)


def _server_form_again(request, server, error: str):
    """The form sent back with `error`, with the server's settings as they are now (its fields and `settings_seen`)."""
    server.refresh_from_db()
    return _again(_server_form(request, server), error)


def backend_admin(view):
    """Where a server points and its credential: the admin role only, asked before anything else."""

    @admin_only
    @wraps(view)
    def check(request, name, *args, **kwargs):
        return view(
            request, get_object_or_404(ToolServer.objects.select_related("credential"), name=name), *args, **kwargs
        )

    return check


@sensitive_post_parameters("secret")
@backend_admin
@require_POST
def set_credential(request, server):
    form = CredentialForm(request.POST)
    if not form.is_valid():
        if "seen" in form.errors:  # a hidden field: its error would show nowhere, and the form never pass
            form = _credential_form_again(
                request,
                server,
                "The page did not say which backend this secret is for: check where it points, then set it again.",
            )
        return _server_page(request, server, credential_form=form, status=400)
    try:
        credential = administration.set_credential(server, request.user, **form.cleaned_data)
    except Refused as exc:
        return _server_page(
            request, server, credential_form=_credential_form_again(request, server, str(exc)), status=400
        )
    messages.success(request, f"Credential set ({credential.shown}). Its server processes restart with it now.")
    return redirect("manage:server", server.name)


def _credential_form_again(request, server, error: str) -> CredentialForm:
    """The form sent back with `error`, saying where the server points now (on the page and in its `seen`)."""
    server.refresh_from_db()
    again = request.POST.copy()
    again["seen"] = server.pointed_at()
    form = CredentialForm(again)
    form.is_valid()
    form.add_error(None, error)
    return form


@backend_admin
@require_POST
def revoke_credential(request, server):
    try:
        administration.revoke_credential(server, request.user)
    except Refused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Credential revoked: {server.name} is stopped until a new one is set.")
    return redirect("manage:server", server.name)


@server_manager
@require_POST
def check(request, server):
    result = check_connection(server.name)
    (messages.success if result["ok"] else messages.error)(request, f"Check connection: {result['detail']}")
    return redirect("manage:server", server.name)


@server_manager
@require_POST
def discover(request, server):
    try:
        changed = administration.discover(server, by=administration.actor(request.user))
    except ServerDidNotStart as exc:
        messages.error(request, f"Discovery failed: {exc}.")
    else:
        if changed:
            messages.warning(request, f"Changed or new, disabled until accepted: {', '.join(changed)}.")
        else:
            messages.success(request, "Discovery: every tool is as accepted.")
    return redirect("manage:server", server.name)


# -- one tool -----------------------------------------------------------------------------------
def _accept_form(tool, data=None):
    """An external tool's listing waiting for acceptance: classify it (None for a built-in's change)."""
    if tool.server.kind != ToolServer.Kind.EXTERNAL or tool.proposed is None:
        return None
    return AcceptExternalToolForm(
        data, properties=sorted((tool.proposed["input_schema"] or {}).get("properties") or {})
    )


def _tool_page(request, tool, *, form=None, policy_form=None, grant_form=None, accept_form=None, status=200):
    policy = ToolPolicy.objects.filter(tool=tool.name).first()
    return render(
        request,
        "manage/tool.html",
        {
            "tool": tool,
            "form": form or ToolForm(instance=tool),
            "policy": policy,
            "policy_form": policy_form or (PolicyForm(instance=policy) if policy else None),
            "approvers": administration.grants("approve_tool", on=policy) if policy else [],
            "grant_form": grant_form or GrantForm(initial={"permission": "approve_tool", "object": tool.name}),
            "accept_form": accept_form or _accept_form(tool),
            "hints": external.hints((tool.proposed or {}).get("annotations") or tool.annotations),
        },
        status=status,
    )


@admin_only
def tool(request, name):
    tool = get_object_or_404(Tool.objects.select_related("server"), name=name)
    if request.method != "POST":
        return _tool_page(request, tool)
    form = ToolForm(request.POST, instance=tool)
    policy = ToolPolicy.objects.filter(tool=tool.name).first()
    policy_form = (
        PolicyForm(request.POST, instance=ToolPolicy.objects.get(pk=policy.pk)) if policy else None
    )  # a copy, as above
    if not form.is_valid() or (policy_form is not None and not policy_form.is_valid()):
        if "tool_seen" in form.errors:
            form = _again(ToolForm(instance=tool), UNSAID)
        if policy_form is not None and "policy_seen" in policy_form.errors:
            policy_form = _policy_form_again(policy, UNSAID)
        return _tool_page(request, tool, form=form, policy_form=policy_form, status=400)
    try:
        with transaction.atomic():  # the switch and the policy, or neither
            changed = set()
            if policy_form is not None:
                changes = dict(policy_form.cleaned_data)
                seen = changes.pop("policy_seen")
                changed |= administration.update_policy(policy, request.user, changes, seen=seen)
            changed |= administration.update_tool(
                tool, request.user, enabled=form.cleaned_data["enabled"], seen=form.cleaned_data["tool_seen"]
            )
    except ChangedSince as exc:  # the tool's page as it is now (the switch and the policy: nothing was saved)
        tool.refresh_from_db()
        if policy is None:
            return _tool_page(request, tool, form=_again(ToolForm(instance=tool), str(exc)), status=400)
        return _tool_page(request, tool, policy_form=_policy_form_again(policy, str(exc)), status=400)
    messages.success(request, f"Saved: {', '.join(sorted(changed))}." if changed else "Nothing changed.")
    return redirect("manage:tool", tool.name)


def _policy_form_again(policy, error: str) -> PolicyForm:
    return _again(PolicyForm(instance=ToolPolicy.objects.get(pk=policy.pk)), error)


@admin_only
@require_POST
def accept_change(request, name):
    tool = get_object_or_404(Tool.objects.select_related("server"), name=name)
    seen = request.POST.get("seen", "")  # the listing the page showed (Tool.proposed_digest)
    accept_form = _accept_form(tool, request.POST)
    if accept_form is not None:
        if not accept_form.is_valid():
            return _tool_page(request, tool, accept_form=accept_form, status=400)
        try:
            administration.accept_external_tool(tool, request.user, seen=seen, **accept_form.cleaned_data)
        except Refused as exc:  # shown with the listing waiting now (the tool as it was re-read)
            accept_form.add_error(None, str(exc))
            return _tool_page(request, tool, accept_form=accept_form, status=400)
        messages.success(request, f"Accepted as a {tool.access}: the model is offered it from now on.")
        return redirect("manage:tool", tool.name)
    try:
        administration.accept_tool_change(tool, request.user, seen=seen)
    except Refused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "Change accepted: the model is offered the new description from now on.")
    return redirect("manage:tool", tool.name)


# -- grants -------------------------------------------------------------------------------------
def _back(request) -> str:
    """Where a grant form came from (a tool's page or the grants page): only ever a page of ours."""
    back = request.POST.get("next", "")
    return back if back.startswith("/manage/") and "//" not in back else "manage:permissions"


@admin_only
def permissions(request, grant_form=None, status=200):
    return render(
        request,
        "manage/permissions.html",
        {
            "grant_form": grant_form or GrantForm(),
            "grants": [row for permission in administration.GRANTABLE for row in administration.grants(permission)],
        },
        status=status,
    )


@admin_only
@require_POST
def grant(request):
    form = GrantForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            obj = administration.grantable_object(data["permission"], data["object"])
        except Refused as exc:
            form.add_error("object", str(exc))
        else:
            try:
                administration.grant(request.user, data["permission"], obj, data["holder"])
            except Refused as exc:
                form.add_error("holder", str(exc))
            else:
                messages.success(
                    request, f"Granted {data['permission'].replace('_', ' ')} on {obj} to {request.POST['holder']}."
                )
                return redirect(_back(request))
    return permissions(request, grant_form=form, status=400)


@admin_only
@require_POST
def revoke(request):
    form = GrantForm(request.POST)
    if not form.is_valid():
        messages.error(request, "That grant does not exist.")
        return redirect("manage:permissions")
    data = form.cleaned_data
    try:
        obj = administration.grantable_object(data["permission"], data["object"])
    except Refused as exc:
        messages.error(request, str(exc))
    else:
        administration.revoke(request.user, data["permission"], obj, data["holder"])
        messages.success(
            request, f"Revoked {data['permission'].replace('_', ' ')} on {obj} from {request.POST['holder']}."
        )
    return redirect(_back(request))


# -- people and their roles ---------------------------------------------------------------------
@admin_only
def people(request, role_form=None, status=200):
    return render(
        request,
        "manage/people.html",
        {
            "people": administration.people(),
            "role_form": role_form or RoleForm(),
            "me": request.user,
        },
        status=status,
    )


def _role_change(change, done: str):
    @admin_only
    @require_POST
    def view(request):
        form = RoleForm(request.POST)
        if form.is_valid():
            person, role = form.cleaned_data["username"], form.cleaned_data["role"]
            try:
                outcome = change(request.user, person, role)
            except Refused as exc:
                form.add_error(None, str(exc))
            else:
                if outcome == "requested":
                    messages.success(
                        request, f"Asked for {person.get_username()}'s admin role: a second admin confirms it here."
                    )
                else:
                    messages.success(request, f"{done} {role} for {person.get_username()}.")
                return redirect("manage:people")
        return people(request, role_form=form, status=400)

    return view


grant_role = _role_change(administration.grant_role, "Granted")
revoke_role = _role_change(administration.revoke_role, "Revoked")
