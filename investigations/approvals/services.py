"""The human gate (architecture rules 6 and 9): action requests, decisions, execution.

A write the agent asks for becomes an ActionRequest and waits; nothing reaches the backend.
Analysts allowed to approve its tool (the django-guardian permission `approve_tool` on its
ToolPolicy, checked again at every decision) approve or reject it; a periodic sweep expires
it. Every transition is one guarded, atomic update recorded as an ActionTransition, an audit
record and an event of the investigation. An approved request is executed by a Celery task
through the gateway with the write's idempotency key, so it reaches the backend exactly once
even when a worker dies mid-way; the investigation then resumes with the result. Every transition
is announced to the enabled approval channels once its transaction commits
(investigations/approvals/channels/): a decision taken through a channel is taken here, the same way.
A write whose outcome nobody can tell (its worker died while it was at a backend that cannot say
whether it happened) waits, `unconfirmed`, for a person allowed to approve its tool to check and
confirm.
"""

import logging
import re
from contextlib import contextmanager
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from guardian.shortcuts import get_objects_for_user
from pydantic import ValidationError

from core import transitions
from core.db import renewed_every
from investigations import live_messages, presence
from investigations.approvals.channels import deliveries as channel_deliveries
from investigations.audit import chain as audit_trail
from investigations.models import (
    ActionApproval,
    ActionRequest,
    ActionTransition,
    AuditRecord,
    Event,
    Investigation,
    ToolPolicy,
)
from investigations.runs import events, services
from toolserver import audit, config, external, idempotency
from toolserver.audit import Outcome
from toolserver.config import find_tool
from toolserver.envelope import BACKEND_NAMES, Reason, error, is_error, is_transient, ok
from toolserver.gateway import CallContext, Gateway
from toolserver.schemas import parse_arguments

log = logging.getLogger(__name__)
State = ActionRequest.State
APPROVE = "investigations.approve_tool"
TOOL_USE_ID = re.compile(r"toolu_[A-Za-z0-9]{8,}")


class DecisionRefused(Exception):
    """A decision that cannot be taken; `status` is the HTTP status an API answers with."""

    status = 409

    def __init__(self, message: str, request: ActionRequest | None = None):
        super().__init__(message)
        self.request = request


class NotAllowed(DecisionRefused):
    status = 403


class StepUpNeeded(NotAllowed):
    """No fresh proof of presence (investigations/presence.py): 403, the message naming step-up; recorded as a denial."""


class NotPending(DecisionRefused):
    """The request was decided (or expired) already: its current state says what happened."""


class NotFound(DecisionRefused):
    status = 404


# -- policies ---------------------------------------------------------------------------------
def write_tools() -> list[str]:
    return config.write_tool_names()


def policy_for(tool: str) -> ToolPolicy:
    policy, _ = ToolPolicy.objects.get_or_create(tool=tool)
    return policy


def ensure_policies() -> None:
    """Every write tool has a policy; a new one may be approved by the analyst role.

    Runs after every migrate (and every test flush): a handful of queries whatever the number of tools."""
    from django.contrib.auth.models import Group
    from guardian.shortcuts import assign_perm

    tools = write_tools()
    missing = set(tools) - set(ToolPolicy.objects.filter(tool__in=tools).values_list("tool", flat=True))
    if not missing:
        return
    ToolPolicy.objects.bulk_create([ToolPolicy(tool=tool) for tool in sorted(missing)], ignore_conflicts=True)
    analysts = Group.objects.filter(name="analyst").first()
    if analysts is not None:
        assign_perm(APPROVE, analysts, ToolPolicy.objects.filter(tool__in=missing))


def may_approve(user, tool: str) -> bool:
    return bool(user.is_authenticated and user.is_active and user.has_perm(APPROVE, policy_for(tool)))


def approvable_tools(user) -> list[str]:
    """The write tools `user` may approve now, sorted: the pages' and the sockets' decision cards show
    their buttons usable for these only (the decision itself checks again with may_approve). One query
    for every tool, since an approvals socket asks again at each access re-check."""
    if not (user.is_authenticated and user.is_active):
        return []
    builtin, external = config.write_tools_split()  # the external ones as a subquery: still one query
    policies = ToolPolicy.objects.filter(Q(tool__in=builtin) | Q(tool__in=external))
    approvable = get_objects_for_user(user, APPROVE, policies, accept_global_perms=False)
    return sorted(approvable.values_list("tool", flat=True))


# -- requests ---------------------------------------------------------------------------------
def request_action(investigation: Investigation, use: dict, *, owner: str, gateway: Gateway) -> ActionRequest | dict:
    """The request for this tool call (made now, or before a restart); an error envelope for a tool
    an admin disabled or for invalid arguments."""
    existing = ActionRequest.objects.filter(investigation=investigation, tool_use_id=use["id"]).first()
    if existing is not None:
        return existing
    server, tool = find_tool(use["name"])
    row = config.tool_row(tool.name)
    try:
        args = parse_arguments(tool.arguments, use["input"])
    except ValidationError:
        args = None
    if row is None or not row.usable or args is None:  # the gateway refuses it, typed and audited
        return gateway.call(use["name"], use["input"], _context(investigation, actor="agent", tool_use_id=use["id"]))
    validated = args.model_dump(mode="json")
    # An external server's arguments are its own: its "host" is not the EDR's to look up.
    facts = None if external.is_external(tool) else _look_up_target(investigation, validated, gateway)
    canonical = {
        field: facts[field] for field in ("host", "username") if facts and facts.get(field) and field in validated
    }
    if canonical:  # one identity, one key: "H-1042" and "ws-fin-07" are the same host
        try:
            args = parse_arguments(tool.arguments, validated | canonical)
            validated = args.model_dump(mode="json")
        except ValidationError:  # a backend's name our schema does not take ("Ana's MacBook"): as the model said it
            log.warning(
                "%s: the backend's name for its target does not fit the tool's schema; kept as asked", tool.name
            )
    key = idempotency.write_key(tool, args, investigation.alert.trigger)
    policy = policy_for(tool.name)
    try:
        # All or nothing: a run that loses the race for this tool_use_id records no step, no audit record
        # and announces nothing (its on-commit callbacks go with the rolled-back savepoint or transaction).
        with transaction.atomic():
            request = ActionRequest.objects.create(
                investigation=investigation,
                tool_use_id=use["id"],
                tool=tool.name,
                server=server.name,
                arguments=validated,
                target=key.target,
                reason=str(validated.get("reason", "")),
                evidence=_cited_evidence(investigation, validated),
                risk=assess_risk(tool.name, validated, facts),
                idempotency_key=key.key,
                approvals_needed=policy.approvals_needed,
                expires_at=timezone.now() + timedelta(seconds=policy.expiry_seconds),
            )
            _transition(request, "", State.PENDING, "agent", request.reason)
            _record(request, Outcome.PENDING_APPROVAL, "agent", owner=owner)
    except IntegrityError:
        # action_unique_tool_use: another run of this turn made it since the check above (a worker stalled
        # past its lease, and the successor that resumed the turn). Theirs is the request, as get_or_create
        # would say; failing here would fail the investigation the live worker runs.
        request = ActionRequest.objects.filter(investigation=investigation, tool_use_id=use["id"]).first()
        if request is None:  # some other constraint
            raise
    return request


# The read that names a write's target, and how its answer names the target's one identity. A host
# by its name: what the alert, the analyst and the outcome line speak of (the backend takes either).
LOOK_UPS = {"host": ("get_host", "hostname"), "username": ("get_user", "username")}


def _look_up_target(investigation: Investigation, arguments: dict, gateway: Gateway) -> dict | None:
    """What the backend says of the write's target, looked up now (an audited read by "system"), so the
    key and the risk note do not depend on what the model chose to read or how it spelled the target.
    Returns the facts with the target's canonical value under its argument's name, or None."""
    for field, (tool, identity) in LOOK_UPS.items():
        if field in arguments:
            result = gateway.call(tool, {field: arguments[field]}, _context(investigation, actor="system"))
            data = result.get("data") if result.get("status") == "ok" else None
            return {**data, field: data.get(identity)} if isinstance(data, dict) else None
    return None


def assess_risk(tool: str, arguments: dict, facts: dict | None) -> list[str]:
    """The blast radius, from what the backend said of the target when the request was made."""
    risk = []
    if "host" in arguments:
        if facts is None:
            risk.append("the host could not be looked up: its role is unknown")
        else:
            if facts.get("role") == "domain_controller":
                risk.append("host is a domain controller: isolating it stops sign-ins across the domain")
            if facts.get("criticality") in ("high", "critical"):
                risk.append(f"host criticality is {facts['criticality']}")
            if facts.get("isolated"):
                risk.append("host is already isolated")
            risk.append(f"host role: {facts.get('role', 'unknown')}")
            if facts.get("host_id"):
                risk.append(f"host id: {facts['host_id']}")
    if "username" in arguments:
        if facts is None:
            risk.append("the account could not be looked up")
        else:
            if facts.get("privileged"):
                risk.append("account is privileged")
            if facts.get("disabled"):
                risk.append("account is already disabled")
    if tool == "open_ticket":
        risk.append(f"opens a {arguments.get('severity', '')} ticket in the ticketing system")
    return risk


def _cited_evidence(investigation: Investigation, arguments: dict) -> list[dict]:
    """The tool results the agent's reason cites by tool_use id."""
    cited = TOOL_USE_ID.findall(" ".join(str(value) for value in arguments.values()))
    results = investigation.events.filter(kind=Event.Kind.TOOL_RESULT, data__tool_use_id__in=cited)
    return [
        {"seq": event.seq, "tool_use_id": event.data["tool_use_id"], "tool": event.data["name"]} for event in results
    ]


# -- decisions --------------------------------------------------------------------------------
def approve(
    request_id: int, user, reason: str = "", *, channel: str = "", proof: presence.Proof | None = None
) -> ActionRequest:
    """One approval; the last one needed approves the request and hands it to a worker. `channel`: the
    approval channel it came through (investigations/approvals/channels/), named in the audit record.
    `proof`: how the person proved presence (presence.of_request); while step-up is on, it must be fresh."""
    from investigations.tasks import execute_action

    with _denial_recorded(user, channel), _refused_when_expired(), transaction.atomic():
        request, now, proof = _pending_for_decision(request_id, user, proof)
        if request.approvals.filter(user=user).exists():
            raise DecisionRefused("You have approved this request already; another person must approve it.", request)
        ActionApproval.objects.create(
            request=request,
            user=user,
            reason=reason,
            created_at=now,
            proof_factor=proof.factor if proof else "",
            proof_at=proof.at if proof else None,
        )
        # Only approvals of people still allowed to approve the tool count: one who lost the right since
        # (deactivated, their role or grant taken) no longer stands behind the write.
        given = sum(may_approve(approval.user, request.tool) for approval in request.approvals.select_related("user"))
        actor = f"user:{user.get_username()}"
        if given < request.approvals_needed:
            _transition(
                request,
                State.PENDING,
                State.PENDING,
                actor,
                f"approval {given} of {request.approvals_needed}: {reason}",
                at=now,
            )
        else:
            _move(request, State.PENDING, State.APPROVED, actor, reason, at=now)
            transaction.on_commit(lambda: execute_action.delay(request.pk))
        _record(request, Outcome.APPROVED, actor, channel=channel, proof=proof)
    return request


def reject(
    request_id: int, user, reason: str, *, channel: str = "", proof: presence.Proof | None = None
) -> ActionRequest:
    reason = (reason or "").strip()
    if not reason:
        raise DecisionRefused("Say why you reject it: the agent is told your reason.")
    actor = f"user:{user.get_username()}"
    with _denial_recorded(user, channel), _refused_when_expired(), transaction.atomic():
        request, now, proof = _pending_for_decision(request_id, user, proof)
        request.result = error(
            Reason.REJECTED_BY_ANALYST,
            retryable=False,
            guidance="An analyst rejected this request, so it was not performed. Do not ask for it again; "
            "continue without it and say so in your summary.",
            analyst_reason=reason[:1000],
        )
        request.outcome = f"rejected by {user.get_username()}: {reason[:200]}"
        _move(request, State.PENDING, State.REJECTED, actor, reason, at=now)
        _record(request, Outcome.REJECTED, actor, channel=channel, proof=proof)
    _finished(request)
    return request


def confirm_outcome(
    request_id: int, user, happened: bool, reason: str, *, proof: presence.Proof | None = None
) -> ActionRequest:
    """A person checked the backend for an `unconfirmed` write (its outcome unknown) and says whether it happened.

    Architecture rules 6 and 9: the write is never sent again on the way here, and only someone allowed
    to approve the tool ends it, judged inside the transaction as approve() is; one
    final state whatever races (the second of two confirmations finds the first's state: NotPending).
    One audit record (who, what they said, why) and one transition. Happened: the request succeeds and
    its idempotency key holds the confirmed result, so a repeat of the action for the alert replays it.
    Not happened: the request fails and its key is freed, so the agent may ask for the action again,
    through the gate and a fresh approval. Either way the investigation resumes with the answer.
    It is a decision on a write as approve() is: while step-up is on, `proof` must be fresh.
    """
    reason = (reason or "").strip()
    if not reason:
        raise DecisionRefused("Say what you checked: the agent is told, and it is kept in the audit trail.")
    name = user.get_username()
    actor = f"user:{name}"
    with _denial_recorded(user), transaction.atomic():
        request = _locked_for(request_id, user, State.UNCONFIRMED)
        proof = _fresh(proof, request)
        if happened:
            request.result = ok(
                {
                    "confirmed_by_person": True,
                    "confirmed_by": name,
                    "analyst_reason": reason[:1000],
                    "note": f"{request.tool} on {request.target} was sent once and its outcome was unknown; an analyst "
                    "checked the backend and confirmed that it took effect. Do not repeat it.",
                },
                source="analyst",
            )
            request.outcome = f"confirmed done by {name}: {reason[:200]}"
            idempotency.confirm_done(request.idempotency_key, request.result)
            to_state, outcome = State.SUCCEEDED, Outcome.CONFIRMED_DONE
        else:
            request.result = error(
                Reason.CONFIRMED_NOT_DONE,
                retryable=False,
                guidance=f"An analyst checked the backend: {request.tool} on {request.target} did not happen. "
                "If it is still needed, you may request it again; it needs an analyst's approval again.",
                analyst_reason=reason[:1000],
            )
            request.outcome = f"confirmed not done by {name}: {reason[:200]}"
            idempotency.confirm_not_done(request.idempotency_key)
            to_state, outcome = State.FAILED, Outcome.CONFIRMED_NOT_DONE
        _move(request, State.UNCONFIRMED, to_state, actor, reason)
        said = {"happened": happened, "reason": reason[:1000], **({"proof": proof.as_record()} if proof else {})}
        _audit_decision(request, outcome, actor, said=said)
    _finished(request)
    return request


def expire_due() -> list[int]:
    """Expire every pending request past its time (the periodic sweep; no ETA tasks)."""
    due = ActionRequest.objects.filter(state=State.PENDING, expires_at__lte=timezone.now())
    return [request_id for request_id in due.values_list("pk", flat=True) if _expire_if_due(request_id)]


def _expire_if_due(request_id: int) -> bool:
    with transaction.atomic():
        request = (
            ActionRequest.objects.select_for_update()
            .filter(pk=request_id, state=State.PENDING, expires_at__lte=timezone.now())
            .first()
        )
        if request is None:
            return False
        _expire(request)
    _finished(request)
    return True


def _expire(request: ActionRequest) -> None:
    """Expire a pending request, locked by the caller's transaction."""
    request.result = error(
        Reason.EXPIRED,
        retryable=False,
        guidance="Nobody decided on this request in time, so it expired and was not performed. "
        "Do not ask for it again; say in your summary that it is still recommended.",
    )
    request.outcome = "expired before anyone decided"
    _move(request, State.PENDING, State.EXPIRED, "system", "not decided in time")
    _record(request, Outcome.EXPIRED, "system")


class _Expired(Exception):
    """Raised inside a decision's transaction to leave it; the request is expired in a transaction of its own."""

    def __init__(self, request_id: int):
        self.request_id = request_id


@contextmanager
def _refused_when_expired():
    """A decision that finds its request past expires_at changes nothing: the request is expired instead
    (whoever runs first, one final state) and the decision refused as no longer pending."""
    try:
        yield
    except _Expired as late:
        _expire_if_due(late.request_id)
        request = ActionRequest.objects.get(pk=late.request_id)
        raise NotPending(f"This request {_STATE_PHRASES[request.state]}.", request) from None


def cancel_pending(investigation_id: int, why: str) -> list[int]:
    """Its investigation ended: every request still pending is cancelled, in the caller's transaction,
    so none waits to expire and the queue shows what became of it."""
    cancelled = []
    pending = ActionRequest.objects.select_for_update().filter(investigation_id=investigation_id, state=State.PENDING)
    for request in pending:
        request.result = error(
            Reason.CANCELLED,
            retryable=False,
            guidance="The investigation ended before anyone decided on this request, so it was not performed.",
        )
        request.outcome = f"cancelled: {why}"
        _move(request, State.PENDING, State.CANCELLED, "system", why)
        _record(request, Outcome.CANCELLED, "system")
        cancelled.append(request.pk)
    return cancelled


# How a 409 says what became of a request that is no longer pending.
_STATE_PHRASES = {
    State.PENDING: "is still pending",
    State.APPROVED: "was approved already",
    State.EXECUTING: "was approved already and is being carried out",
    State.SUCCEEDED: "was approved and carried out already",
    State.FAILED: "was approved already; carrying it out failed",
    State.REJECTED: "was rejected already",
    State.EXPIRED: "expired before anyone decided",
    State.CANCELLED: "was cancelled",
    State.UNCONFIRMED: "was carried out, but whether it took effect is unknown: "
    "it waits for a person to check and confirm",
}


@contextmanager
def _denial_recorded(user, channel: str = ""):
    """A decision refused for want of permission is evidence too: recorded after its transaction rolled back."""
    try:
        yield
    except NotAllowed as refused:
        _audit_decision(refused.request, Outcome.DENIED, f"user:{user.get_username()}", channel=channel)
        raise


def _locked_for(request_id: int, user, state: str) -> ActionRequest:
    """The request, locked, if `user` may decide on its tool (checked now, inside the decision's transaction,
    not at page load) and it is in `state`: of two decisions at once, the second finds the first's state."""
    request = ActionRequest.objects.select_for_update().filter(pk=request_id).first()
    if request is None:
        raise NotFound("No such action request.")
    if not may_approve(user, request.tool):
        raise NotAllowed(f"You are not allowed to approve {request.tool}.", request)
    if request.state != state:
        raise NotPending(f"This request {_STATE_PHRASES[request.state]}.", request)
    return request


def _pending_for_decision(
    request_id: int, user, proof: presence.Proof | None
) -> tuple[ActionRequest, datetime, presence.Proof | None]:
    """The request, locked, if it is still pending and `user` may decide it (_locked_for), and the moment
    of the decision: read after the lock, the one time the deadline is compared with and the decision
    recorded at, so no decision is ever dated after expires_at. While step-up is on, `proof` must be
    fresh at that moment too (StepUpNeeded)."""
    request = _locked_for(request_id, user, State.PENDING)
    now = timezone.now()
    if now >= request.expires_at:
        raise _Expired(request.pk)
    return request, now, _fresh(proof, request, now)


def _fresh(proof: presence.Proof | None, request: ActionRequest, now: datetime | None = None) -> presence.Proof | None:
    """The decision's proof of presence, if fresh (or step-up is off); StepUpNeeded otherwise."""
    try:
        return presence.require_fresh(proof, now)
    except presence.StepUpRequired as refused:
        raise StepUpNeeded(str(refused), request) from None


# -- execution --------------------------------------------------------------------------------
def execute(request_id: int) -> None:
    """Fire an approved request once (Celery task). Safe to run again: the key keeps it to one write."""
    now = timezone.now()
    lease = now + timedelta(seconds=settings.TOOLSERVER_WRITE_LEASE_S)
    # The move and its record commit together: a database error between them would leave the request
    # executing with no recorded way there. The gateway call below stays outside any transaction.
    with transaction.atomic():
        if _moved(request_id, State.APPROVED, State.EXECUTING, lease_expires_at=lease):
            from_state, why = State.APPROVED, ""
        elif _moved(request_id, State.EXECUTING, State.EXECUTING, Q(lease_expires_at__lt=now), lease_expires_at=lease):
            from_state, why = (
                State.EXECUTING,
                "again: the previous run stopped or lost its answer (the idempotency key keeps it to one write)",
            )
        else:
            return  # decided otherwise, or another worker is running it
        request = ActionRequest.objects.select_related("investigation__alert").get(pk=request_id)
        _transition(request, from_state, State.EXECUTING, "system", why)
    _action_event(request)
    approvers = ",".join(request.approvals.order_by("created_at").values_list("user__username", flat=True))
    context = _context(
        request.investigation,
        actor=f"user:{approvers}",
        approval=f"action-request-{request.pk}",
        tool_use_id=request.tool_use_id,
    )
    with _lease_renewed(request):
        result = Gateway().call(request.tool, request.arguments, context)
    if is_error(result) and result.get("reason") in (Reason.IN_PROGRESS, Reason.RATE_LIMITED):
        # Not at the backend yet (throttled), or an earlier run still is: the sweep tries again later.
        retry_at = timezone.now() + timedelta(seconds=result.get("retry_after_s") or 0)
        ActionRequest.objects.filter(pk=request_id, state=State.EXECUTING).update(lease_expires_at=retry_at)
        return
    lost = idempotency.given_up(request.idempotency_key)  # it left and its answer was lost: it may have happened
    # Asked again later only when this run lost its answer (a transient failure; one refused before it left, a
    # tool switched off meanwhile, cannot ask the backend: a person checks, rather than a retry every lease).
    if lost is not None and lost < settings.TOOLSERVER_ANSWERS_LOST_BEFORE_A_PERSON and is_transient(result):
        _ask_the_backend_later(request, result)
        return
    if lost is not None:
        result = _given_to_a_person(request, lost) or result
    if is_error(result) and result.get("reason") == Reason.OUTCOME_UNKNOWN:
        state = State.UNCONFIRMED  # not final: a person checks the backend (confirm_outcome)
    else:
        state = State.FAILED if is_error(result) else State.SUCCEEDED
    with transaction.atomic():
        if not _moved(
            request_id,
            State.EXECUTING,
            state,
            result=result,
            outcome=describe_outcome(request, result),
            lease_expires_at=None,
        ):
            return
        request.refresh_from_db()
        _transition(request, State.EXECUTING, state, "system", request.outcome)
    _finished(request)  # unconfirmed: the viewers are told; the investigation keeps waiting


def _ask_the_backend_later(request: ActionRequest, result: dict) -> None:
    """Its answer was lost (a timeout, a 5xx, its server gone mid-call): not failed, since it may have happened.
    It stays executing, its lease set a write lease ahead (and never less than the worker waited for the answer),
    so the backend has time to finish what it may still be doing; then the sweep runs it again, and the gateway
    asks the backend first (a ticket opened late is found, not opened twice) and sends it only if the backend
    says it did not happen."""
    server, _ = find_tool(request.tool)
    request.outcome = (
        f"no answer from the {_backend_named(server)} ({result.get('reason', 'error')}): it will be asked whether this "
        "happened, and this is sent again only if it did not"
    )
    # A short write lease (it only has to outlive a dead worker) must not ask a slow backend before it is done.
    wait_s = max(settings.TOOLSERVER_WRITE_LEASE_S, settings.BACKEND_TIMEOUT_S)
    later = timezone.now() + timedelta(seconds=wait_s)
    with transaction.atomic():
        if not _moved(request.pk, State.EXECUTING, State.EXECUTING, outcome=request.outcome, lease_expires_at=later):
            return
        _transition(request, State.EXECUTING, State.EXECUTING, "system", request.outcome)
    _action_event(request)


def _given_to_a_person(request: ActionRequest, runs: int) -> dict | None:
    """A given-up write not to be asked about again: its key settled outcome_unknown (the result returned), and
    the trail told so, as it is when the gateway settles one. None when another run took the key over."""
    result = _answer_lost(request, runs)
    context = _context(request.investigation, actor="system", tool_use_id=request.tool_use_id)
    with transaction.atomic():
        if not idempotency.settle_unknown(request.idempotency_key, result):
            return None
        Gateway().record_settled(request.tool, request.arguments, result, context, key=request.idempotency_key)
    return result


def _answer_lost(request: ActionRequest, runs: int) -> dict:
    """A write whose answer every run lost: whether the last run's took effect is unknown; a person checks."""
    server, _ = find_tool(request.tool)
    return error(
        Reason.OUTCOME_UNKNOWN,
        retryable=False,
        guidance=f"{request.tool} was sent and no answer came back (runs that sent it: {runs}, each after the first "
        f"only once the {_backend_named(server)} said the one before had not happened); whether it took effect is "
        "unknown, so it was not sent again. An analyst must check and confirm. Do not repeat it.",
    )


def _backend_named(server) -> str:
    """A server's backend as analysts say it ("EDR", "identity provider"), for the lines they read."""
    return BACKEND_NAMES.get(server.backend, server.backend)


def _lease_renewed(request: ActionRequest):
    """While its write runs, a live worker renews the request's lease every third of
    GATEHOUSE_WRITE_LEASE_S: the lease can be short, since only a dead worker's run goes stale. (The
    key's claim is renewed by the gateway, which alone knows whether this run holds it.)"""

    def renew() -> bool:  # until it is executing no more: then nobody waits on its lease
        until = timezone.now() + timedelta(seconds=settings.TOOLSERVER_WRITE_LEASE_S)
        return ActionRequest.objects.filter(pk=request.pk, state=State.EXECUTING).update(lease_expires_at=until) == 1

    return renewed_every(settings.TOOLSERVER_WRITE_LEASE_S / 3, renew, name=f"lease-renewal-{request.pk}")


def stalled_executions(*, approved_for_s: float) -> list[int]:
    """Approved requests no worker took, and executions whose worker died."""
    now = timezone.now()
    approved = Q(state=State.APPROVED, updated_at__lte=now - timedelta(seconds=approved_for_s))
    abandoned = Q(state=State.EXECUTING, lease_expires_at__lt=now)
    return list(ActionRequest.objects.filter(approved | abandoned).values_list("pk", flat=True))


def describe_outcome(request: ActionRequest, result: dict) -> str:
    """The result in a line, for the analyst: "WS-FIN-07 isolated", "ticket #4471 opened"."""
    if is_error(result) and result.get("reason") == Reason.OUTCOME_UNKNOWN:
        return (
            "outcome unknown — check and confirm: it was sent, its answer was lost (its worker stopped, or the "
            "backend did not answer), and whether it happened cannot be told"
        )
    if is_error(result):
        return f"failed: {result.get('reason', 'error')}"
    data = result.get("data") if isinstance(result.get("data"), dict) else {}
    host, username = request.arguments.get("host"), request.arguments.get("username")
    again = " (already done for this alert: the first result)" if data.get("replayed") else ""
    if request.tool == "isolate_host":
        return f"{host} {'was already isolated' if data.get('already_isolated') else 'isolated'}{again}"
    if request.tool == "release_host":
        return f"{host} released{again}"
    if request.tool in ("disable_account", "enable_account"):
        verb = "disabled" if request.tool == "disable_account" else "enabled"
        return f"{username} {'was already ' + verb if data.get('already') else verb}{again}"
    if request.tool == "open_ticket":
        return f"ticket #{data.get('ticket_id', '?')} opened{again}"
    return f"{request.tool} succeeded{again}"


# -- shared steps ------------------------------------------------------------------------------
def _context(investigation: Investigation, *, actor: str, approval: str = "", tool_use_id: str = "") -> CallContext:
    return CallContext(
        investigation.correlation_id,
        investigation.alert.trigger,
        actor=actor,
        approval=approval,
        tool_use_id=tool_use_id,
    )


def _moved(request_id: int, from_state: str, to_state: str, when: Q | None = None, **fields) -> bool:
    """One guarded update, and whether it moved the row: a move ActionRequest.TRANSITIONS does not allow
    raises IllegalTransition before the row is touched; the WHERE clause holds the state it must come from
    (and `when`). Every change of a request's state goes through here."""
    transitions.check(ActionRequest.TRANSITIONS, from_state, to_state, what="an action request")
    if "outcome" in fields:  # a line for people, built from a reason and a name as long as they were given
        fields["outcome"] = fields["outcome"][: ActionRequest._meta.get_field("outcome").max_length]
    rows = ActionRequest.objects.filter(when or Q(), pk=request_id, state=from_state)
    fields.setdefault("updated_at", timezone.now())  # a decision gives its own moment (_move)
    return bool(rows.update(state=to_state, **fields))


def _move(
    request: ActionRequest, from_state: str, to_state: str, actor: str, reason: str, *, at: datetime | None = None
) -> None:
    """One guarded transition of a decision (_moved), recorded; NotPending when another got there first.
    `at`: a decision's moment (_pending_for_decision), the row and its step dated with it, never after."""
    at = at or timezone.now()
    if not _moved(request.pk, from_state, to_state, result=request.result, outcome=request.outcome, updated_at=at):
        request.refresh_from_db(fields=["state"])  # the state that won, for the caller to report
        raise NotPending(f"This request {_STATE_PHRASES[request.state]}.", request)
    request.state = to_state
    _transition(request, from_state, to_state, actor, reason, at=at)


def _transition(
    request: ActionRequest, from_state: str, to_state: str, actor: str, reason: str, *, at: datetime | None = None
) -> None:
    """One recorded transition, announced to the approval channels once it commits; a step the table
    does not allow is refused, a new request's first ("" -> its initial state) included. `at`: when it
    happened, if not now (a decision's moment)."""
    if from_state or to_state != ActionRequest.INITIAL:
        transitions.check(ActionRequest.TRANSITIONS, from_state, to_state, what="an action request")
    ActionTransition.objects.create(
        request=request, from_state=from_state, to_state=to_state, actor=actor, reason=reason, at=at or timezone.now()
    )
    channel_deliveries.announce_on_commit(request.pk, from_state, to_state)


def _record(
    request: ActionRequest,
    outcome: Outcome,
    actor: str,
    *,
    owner: str | None = None,
    channel: str = "",
    proof: presence.Proof | None = None,
) -> None:
    """The decision as an audit record of the tool call it gates (with how its person proved presence),
    and as an event of the investigation."""
    _audit_decision(request, outcome, actor, channel=channel, said={"proof": proof.as_record()} if proof else None)
    transaction.on_commit(lambda: _action_event(request, owner=owner))


def _audit_decision(
    request: ActionRequest, outcome: Outcome, actor: str, *, channel: str = "", said: dict | None = None
) -> None:
    """A decision taken through an approval channel names it: `source` "channel:<name>" and extra["channel"];
    `said`: what the person said with their decision (confirm_outcome), kept in the record."""
    _, tool = find_tool(request.tool)
    audit_trail.append(
        kind=AuditRecord.Kind.DECISION,
        server=request.server,
        tool=request.tool,
        tool_use_id=request.tool_use_id,
        arguments=audit.redact(tool, request.arguments),
        outcome=outcome,
        idempotency_key=request.idempotency_key,
        correlation_id=request.investigation.correlation_id,
        actor=actor,
        source=f"channel:{channel}" if channel else "",
        extra={"action_request": request.pk, **({"channel": channel} if channel else {}), **(said or {})},
    )


def _action_event(request: ActionRequest, *, owner: str | None = None) -> None:
    events.record_event(request.investigation_id, Event.Kind.ACTION, summary(request), owner=owner)
    from investigations.approvals import live  # it reads the queue's selectors, which use this module

    live.publish(request.pk)


def _finished(request: ActionRequest) -> None:
    """A final state (or unconfirmed): tell the viewers, and hand the investigation back to a worker
    once none of its requests is undecided (runs.services.resume: an unconfirmed one keeps it waiting)."""
    if request.state not in (State.REJECTED, State.EXPIRED):  # those recorded their event with the audit
        _action_event(request)
    services.resume(request.investigation_id)


def summary(request: ActionRequest) -> dict:
    """What the pages, the API, the transcript and the sockets show of a request (live_messages.ActionSummary)."""
    return live_messages.request_summary(request)
