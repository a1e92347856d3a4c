"""The gateway: the one way the agent (or an approved action) calls a tool.

In order, for every call: find the tool, refuse it if an admin disabled it, validate the
arguments at the boundary, take a rate-limit token for its server, claim the idempotency key of
a write, call the server process through the supervisor, settle the key, and emit one audit
record (a write two: "dispatched" before it leaves, its outcome after). Every failure comes back
as a typed error envelope; nothing raises to the caller.
"""

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from pydantic import ValidationError

from core.inputs import storable
from toolserver import audit, config, external, idempotency
from toolserver.audit import Outcome, ToolCallAudit
from toolserver.catalog import ServerSpec, ToolSpec
from toolserver.config import find_tool
from toolserver.envelope import BackendFailure, Reason, error, invalid_arguments, is_error, is_transient, ok
from toolserver.meta import META_CHECK_DONE, META_CORRELATION, META_IDEMPOTENCY_KEY, META_TRIGGER
from toolserver.ratelimit import get_rate_limiter, limit_of
from toolserver.schemas import parse_arguments


@dataclass(frozen=True)
class CallContext:
    correlation_id: str  # the investigation the call belongs to
    trigger: str  # the alert that caused it: part of every write's idempotency key
    actor: str = "agent"  # "agent", or "user:<username>" for an approved action
    approval: str = ""  # the approval a write carries; a write without one never reaches its server
    tool_use_id: str = ""  # the model's id of this call, so the audit record meets its transcript entry
    # Called with the result inside the transaction that writes its audit record: what the caller keeps of
    # it (the agent's saved progress) commits with the record or not at all, so a worker killed between
    # the two never leaves a completed call that its successor would make again.
    keep: Callable[[dict], None] | None = field(default=None, compare=False)


class Gateway:
    def __init__(self, supervisor=None, rate_limiter=None):
        if supervisor is None:
            from toolserver.supervisor import get_supervisor

            supervisor = get_supervisor()
        self.supervisor = supervisor
        self.rate_limiter = rate_limiter or get_rate_limiter()

    def call(self, tool_name: str, arguments, context: CallContext) -> dict:
        """`arguments` as the model sent them: any JSON value (only an object can be valid)."""
        started = time.perf_counter()
        found = find_tool(tool_name)
        if found is None:
            result = error(Reason.UNKNOWN_TOOL, retryable=False, guidance="Use only the tools you were given.")
            return self._audited(None, None, {}, result, context, started, Outcome.ERROR)
        server, tool = found
        row = config.tool_row(tool.name)
        if row is None or not row.usable:
            result = error(Reason.TOOL_DISABLED, retryable=False, guidance=_disabled_guidance(row))
            return self._audited(server, tool, _named_only(arguments, tool), result, context, started, Outcome.ERROR)
        if not isinstance(arguments, dict):
            result = error(
                Reason.INVALID_ARGUMENTS,
                retryable=False,
                guidance="Fix the arguments and call again: they must be a JSON object of named arguments.",
            )
            return self._audited(server, tool, {}, result, context, started, Outcome.ERROR)
        try:
            args = parse_arguments(tool.arguments, arguments)
        except ValidationError as exc:
            result = invalid_arguments(exc)
            return self._audited(server, tool, _named_only(arguments, tool), result, context, started, Outcome.ERROR)

        validated = args.model_dump(mode="json")
        if tool.write and not context.approval:  # architecture rule 9, kept here whatever the caller does
            result = error(
                Reason.APPROVAL_REQUIRED,
                retryable=False,
                guidance=f"{tool.name} changes the estate and needs an analyst's approval, which this request "
                "does not have, so it was not performed. Do not retry it; recommend it in your summary.",
            )
            return self._audited(server, tool, validated, result, context, started, Outcome.ERROR)
        wait_s = self.rate_limiter.acquire(server.name, limit_of(row.server))
        if wait_s is not None:
            retry_after_s = max(1, round(wait_s))
            result = error(
                Reason.RATE_LIMITED,
                retryable=True,
                guidance=f"Too many calls to {server.name}. Wait {retry_after_s} s before calling it again; "
                "this is not evidence either way.",
                retry_after_s=retry_after_s,
            )
            return self._audited(server, tool, validated, result, context, started, Outcome.RATE_LIMITED)

        backend = config.binding_of(row.server)
        if tool.write:
            return self._write(server, tool, args, validated, context, started, backend)
        result, backend_status = self._send(server, tool, validated, context, idempotency_key="", backend=backend)
        outcome = Outcome.ERROR if is_error(result) else Outcome.OK
        return self._audited(server, tool, validated, result, context, started, outcome, backend_status=backend_status)

    def refuse(self, tool_name, arguments, context: CallContext, result: dict) -> dict:
        """A call the agent loop refused before calling it (see investigations/agent.py): audited all the same."""
        started = time.perf_counter()
        found = find_tool(tool_name) if isinstance(tool_name, str) else None
        server, tool = found or (None, None)
        named = _named_only(arguments, tool) if tool else {}
        return self._audited(server, tool, named, result, context, started, Outcome.ERROR)

    def record_settled(self, tool_name: str, arguments: dict, result: dict, context: CallContext, *, key: str) -> None:
        """A write's key settled outside a call (investigations.approvals: given to a person after its answers were
        lost), recorded as a call that settles one is."""
        server, tool = find_tool(tool_name) or (None, None)
        self._audited(
            server,
            tool,
            arguments,
            result,
            context,
            time.perf_counter(),
            Outcome.ERROR,
            key=key,
            backend_status="settled",
        )

    def _write(
        self,
        server: ServerSpec,
        tool: ToolSpec,
        args,
        validated: dict,
        context: CallContext,
        started: float,
        backend: config.BackendBinding,
    ) -> dict:
        if not context.trigger:
            raise ValueError("a write needs the alert that triggered it")
        key = idempotency.write_key(tool, args, context.trigger)
        claim = idempotency.claim(server, tool, key, context.trigger)
        audit_args = dict(validated)
        if isinstance(claim, idempotency.Prior):
            result = _replayed(claim.result)
            return self._audited(server, tool, audit_args, result, context, started, Outcome.REPLAYED, key=key.key)
        if isinstance(claim, idempotency.Conflict):
            result = error(
                Reason.IDEMPOTENCY_CONFLICT,
                retryable=False,
                guidance=f"{tool.name} was already requested for this alert and target with different "
                f"arguments; the first request stands ({_summary(claim.result)}). Do not repeat it.",
            )
            return self._audited(server, tool, audit_args, result, context, started, Outcome.ERROR, key=key.key)
        if isinstance(claim, idempotency.InProgress):
            result = _in_progress(tool)
            return self._audited(server, tool, audit_args, result, context, started, Outcome.ERROR, key=key.key)

        with idempotency.renewed(key, claim.token):  # this run's claim, while the backend is asked
            # Its holder died: the write may have reached the backend already.
            checked = (
                self._check_done(server, tool, validated, context, key, claim, backend) if claim.taken_over else None
            )
            # Still this run's? One that stalled past its lease (its renewals late or failing) may have
            # had its claim taken over, and the taker be sending the write now: sent by both, it would
            # happen twice. Renewed here, fenced by its token, it is this run's for a whole lease more,
            # its renewals going on. (Not in the dispatch record's transaction: holding the key's row
            # while that waits on the audit head could deadlock with whoever holds them the other way.)
            sent = checked is None and idempotency.renew(key.key, claim.token)
            if sent:
                self._audited(server, tool, audit_args, {}, context, started, Outcome.DISPATCHED, key=key.key)
                result, backend_status = self._send(
                    server, tool, validated, context, idempotency_key=key.key, backend=backend
                )
                # Settled while the claim is still renewed: behind a busy pool, a lease could run out
                # between the answer and its record, and another run take the key over.
                result = _settled(key, claim, tool, server, result, backend_status)
        if checked is not None:
            result, outcome = checked
            return self._audited(
                server, tool, audit_args, result, context, started, outcome, key=key.key, backend_status="checked"
            )
        if not sent:  # another run holds the key now and sends it: its result is the key's, for a retry to get
            result = _in_progress(tool)
            return self._audited(server, tool, audit_args, result, context, started, Outcome.ERROR, key=key.key)
        outcome = Outcome.ERROR if is_error(result) else Outcome.OK
        return self._audited(
            server, tool, audit_args, result, context, started, outcome, key=key.key, backend_status=backend_status
        )

    def _check_done(self, server, tool, validated, context, key, claim, backend) -> tuple[dict, Outcome] | None:
        """Before sending an abandoned write again: the backend's word on whether it happened.

        None: it did not, send it. Otherwise the key is settled with what the backend says (done) or,
        when it cannot tell, with outcome_unknown, for a person to check: never sent a second time.
        """
        answer: Any = {}  # an external server cannot be asked whether it already did it: cannot tell
        if not external.is_external(tool):
            answer, _ = self._send(
                server, tool, validated, context, idempotency_key=key.key, backend=backend, check=True
            )
        check = answer.get("data") if not is_error(answer) and isinstance(answer.get("data"), dict) else {}
        if check.get("check") == "not_done":
            return None
        if check.get("check") == "done":
            result = ok(check.get("result") or {}, source=answer.get("source", ""))
            idempotency.complete(key, claim.token, result, failed=False)
            return result, Outcome.OK
        result = _outcome_unknown(tool, server)
        idempotency.complete(key, claim.token, result, failed=True)
        return result, Outcome.ERROR

    def _send(
        self,
        server: ServerSpec,
        tool: ToolSpec,
        validated: dict,
        context: CallContext,
        *,
        idempotency_key: str,
        backend: config.BackendBinding,
        check: bool = False,
    ):
        meta = {
            META_CORRELATION: context.correlation_id,
            META_TRIGGER: context.trigger,
            META_IDEMPOTENCY_KEY: idempotency_key,
            **({META_CHECK_DONE: True} if check else {}),
        }
        if isinstance(tool, external.ExternalToolSpec):  # called by its own name on its own server
            result, status = self.supervisor.call(server.name, tool.remote, validated, {}, backend)
        else:
            result, status = self.supervisor.call(server.name, tool.name, validated, meta, backend)
        return storable(result), status  # a backend's NUL would fail the record and the result's keeping

    def _audited(self, server, tool, arguments, result, context, started, outcome, *, key="", backend_status=""):
        with transaction.atomic():
            self._record(server, tool, arguments, result, context, started, outcome, key, backend_status)
            if context.keep is not None and outcome != Outcome.DISPATCHED:
                context.keep(result)
        return result

    def _record(self, server, tool, arguments, result, context, started, outcome, key, backend_status) -> None:
        audit.emit(
            ToolCallAudit(
                server=server.name if server else "",
                tool=tool.name if tool else "",
                arguments=audit.redact(tool, arguments),
                outcome=outcome,
                reason=result.get("reason", "") if is_error(result) else "",
                idempotency_key=key,
                backend_status=str(backend_status or ""),
                latency_ms=(time.perf_counter() - started) * 1000,
                correlation_id=context.correlation_id,
                tool_use_id=context.tool_use_id,
                actor=context.actor,
                source=result.get("source", ""),
                extra={} if outcome == Outcome.DISPATCHED else {"result_sha256": audit.result_digest(result)},
            )
        )


def _settled(key, claim, tool: ToolSpec, server, result: dict, backend_status: str) -> dict:
    """A sent write's key settled by its answer: completed with it, or left for a retry when it may pass;
    the result the caller is told."""
    if is_transient(result) and _may_have_happened(result, backend_status):
        if external.is_external(tool):
            # An external server can neither take our key nor say whether it did it (_check_done): sent
            # again, it could happen twice. A person checks (architecture rule 9).
            result = _outcome_unknown(tool, server)
        else:
            # A built-in's backend can say: the retry asks it first (a ticket opened after the worker
            # stopped waiting is found, not opened again).
            idempotency.give_up(key, claim.token)
            return result
    if is_transient(result):
        idempotency.release(key, claim.token)
    else:
        idempotency.complete(key, claim.token, result, failed=is_error(result))
    return result


def _may_have_happened(result: dict, backend_status: str) -> bool:
    """A transient failure after which the write may have taken effect: anything but a server that never
    started or a backend that throttled it (it refused before acting)."""
    throttled = str(result.get("reason", "")).endswith(f"_{BackendFailure.RATE_LIMITED}")
    return backend_status != "toolserver_not_started" and not throttled


def _in_progress(tool: ToolSpec) -> dict:
    return error(
        Reason.IN_PROGRESS,
        retryable=True,
        guidance=f"The same {tool.name} for this alert is still running. Do not repeat it; "
        "its result will be the result of this request.",
    )


def _disabled_guidance(row) -> str:
    if row is not None and row.proposed is not None:
        why = "its server now describes it differently, and an admin has not yet accepted the change"
    elif row is not None and not row.server.enabled:
        why = f"an admin switched off its server, {row.server.name}"
    else:
        why = "an admin switched it off"
    return f"This tool cannot be used now: {why}. Do not retry it. This is not evidence either way: say that the check could not be made."


def _named_only(arguments: object, tool: ToolSpec) -> dict:
    """Rejected arguments are kept for the audit only when they name a known field."""
    if not isinstance(arguments, dict):  # a list, a string, null: the model's input is not an object
        return {}
    known = set(tool.arguments.model_fields) or set(getattr(tool.arguments, "schema_", {}).get("properties", {}))
    return {name: value for name, value in arguments.items() if name in known}


def _replayed(prior: dict) -> dict:
    if is_error(prior):
        return prior
    return {**prior, "data": {**(prior.get("data") or {}), "replayed": True}}


def _summary(result: dict | None) -> str:
    if not result:
        return "still running"
    return json.dumps(result.get("data") if not is_error(result) else {"error": result.get("reason")}, default=str)[
        :200
    ]


def _outcome_unknown(tool: ToolSpec, server: ServerSpec) -> dict:
    """A write that was sent and whose effect nobody can tell: settled, never sent again; a person checks."""
    return error(
        Reason.OUTCOME_UNKNOWN,
        retryable=False,
        guidance=f"{tool.name} was sent once and no answer was recorded; the {server.backend} cannot say whether "
        "it took effect, so it was not sent again. An analyst must check and confirm. Do not repeat it.",
    )
