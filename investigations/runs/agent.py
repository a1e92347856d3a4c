"""The agent loop: one investigation, step by step, with its state saved after every step.

A step is either one model turn (streamed; its text saved and published as it arrives) or one
tool call of the turn before; the reads a turn asks for together are made at the same time, its
writes one by one after them. After each step the conversation, the tool results so far and
the budgets used are saved, fenced by the worker's lease. A worker that takes over a stalled
investigation therefore resumes from the last saved step and repeats no tool call that had
completed.

The control layer, not the model, enforces the budgets (tool calls, tokens, wall time): when
one runs out, the investigation ends as inconclusive, with the reason. The token budget counts
every token the API reports, cached or not (usage.py); the prompt carries cache breakpoints
(llm.cached_request) so each turn reads the conversation so far from the cache. The wall time holds during
a turn too: at the deadline the model's connection is shut, however slowly it streams.

Whatever the model sends is answered, never acted on blindly: a tool call runs only when its turn
finished asking for tools (stop reason "tool_use"), under an id no other call in the conversation
has; any other call is answered with a typed error, audited like every call and counted against
the budget. A reused id is refused even with the same arguments: the id ties a call to its
transcript entry, its audit record and its action request, so an earlier call's result is never
handed out as this one's (and a read now may differ from a read then). The conversation is saved
as the model sent it; `as_sent` makes the request the API accepts from it.
"""

import logging
import re
import socket
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from functools import cached_property, partial

from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction
from django.utils import timezone

from core.db import release_connection
from core.inputs import storable
from investigations.approvals.services import policy_for, request_action
from investigations.models import Alert, Event, Investigation
from investigations.runs import llm, services
from investigations.runs.events import LeaseLost, record_event
from investigations.runs.prompts import (
    CONCLUDE_AGAIN,
    RELATED_SHOWN,
    SYSTEM_PROMPT,
    first_message,
    related_alerts,
    tool_result_content,
)
from investigations.runs.usage import TokenUsage
from investigations.runs.verdict import parse_verdict
from toolserver import config, external
from toolserver.config import find_builtin, find_tool
from toolserver.envelope import Reason, error
from toolserver.gateway import CallContext, Gateway

log = logging.getLogger(__name__)
Status, Verdict, Kind = Investigation.Status, Investigation.Verdict, Event.Kind


# What a database that is away for a moment raises (a pool timeout, a connection ended by a restart):
# the investigation is not at fault, and a later try resumes it from its last saved step.
DATABASE_AWAY = (OperationalError, InterfaceError)


def run(investigation_id: int, *, retry_database_errors: bool = False) -> None:
    """Run (or resume) an investigation, if no live worker holds it. Safe to call twice.

    With `retry_database_errors` (its task has tries left), a DATABASE_AWAY error hands it back and is
    raised again, for the task to try later; without, it fails the investigation as any error does."""
    import anthropic  # here, not at import: the console's web side imports this module, and never asks a model

    owner = services.claim(investigation_id)
    if owner is None:
        return
    with services.held(investigation_id, owner):
        try:
            Agent(investigation_id, owner).run()
        except LeaseLost:
            log.warning("investigation %s: lease lost to another worker; stopping here", investigation_id)
        except anthropic.APIError as exc:
            _fail(investigation_id, owner, f"The model could not be reached ({type(exc).__name__}).")
        except DATABASE_AWAY as exc:
            release_connection()  # a broken one: what follows takes a fresh one
            if not retry_database_errors:
                _fail(
                    investigation_id,
                    owner,
                    f"The database did not answer ({type(exc).__name__}) and its retries are used up; see the worker log.",
                )
                return
            _give_back(investigation_id, owner, exc)
            raise
        except Exception as exc:  # noqa: BLE001 - whatever else failed, the investigation fails with it
            # Where it failed, not the message: a message can quote the model's raw tool arguments,
            # which the audit trail keeps only as a hash.
            log.error(
                "investigation %s failed: %s\n%s",
                investigation_id,
                type(exc).__name__,
                "".join(traceback.format_tb(exc.__traceback__)).rstrip(),
            )
            _fail(investigation_id, owner, f"Internal error ({type(exc).__name__}); see the worker log.")


def _fail(investigation_id: int, owner: str, reason: str) -> None:
    with suppress(LeaseLost):
        services.finish(investigation_id, owner, status=Status.FAILED, end_reason=reason)


def _give_back(investigation_id: int, owner: str, exc: Exception) -> None:
    """Queued again for the task's next try (or the sweep's hand-over); when the database does not
    answer that either, its lease is left to expire, and the next try or sweep after that resumes it."""
    log.warning(
        "investigation %s: the database did not answer (%s); handing it back", investigation_id, type(exc).__name__
    )
    try:
        services.give_back(
            investigation_id, owner, f"Handed back: the database did not answer ({type(exc).__name__}); trying again."
        )
    except DATABASE_AWAY:
        log.warning(
            "investigation %s: not handed back (the database is still away); its lease expires", investigation_id
        )
    finally:
        release_connection()


class Agent:
    def __init__(self, investigation_id: int, owner: str):
        self.owner = owner
        self.investigation = Investigation.objects.select_related("alert").get(pk=investigation_id)
        # The turn whose calls a run before this one may have announced: the last saved as it resumes.
        # Only those are looked up before they are announced (a query a call saved everywhere else).
        started = self.investigation.started_at is not None
        self.resumed_turn = f"{len(self.investigation.messages) - 1}." if started else None
        self.gateway = Gateway()
        self.context = CallContext(
            correlation_id=self.investigation.correlation_id, trigger=self.investigation.alert.trigger, actor="agent"
        )

    @property
    def id(self) -> int:
        return self.investigation.pk

    def run(self) -> None:
        investigation = self.investigation
        if investigation.started_at is None:
            self._save(started_at=timezone.now(), messages=[first_message(investigation.alert)])
            self._event(
                Kind.STATUS,
                {"status": Status.RUNNING, "message": f"Investigating with the {investigation.model_name}."},
            )
        else:
            self._event(Kind.STATUS, {"status": Status.RUNNING, "message": "Resumed from the last saved step."})
        while True:
            last = investigation.messages[-1]
            if last["role"] == "assistant":
                uses = [block for block in last["content"] if block.get("type") == "tool_use"]
                if not uses:
                    if self._concluded(last):
                        return
                    continue  # alerts joined while it concluded: told, it answers again
                if not self._call_tools(uses):
                    return
            else:
                if stop := self._over_budget(tokens=True):
                    return self._stop(stop)
                self._tell_related()
                if not self._model_turn():
                    return

    # -- steps --------------------------------------------------------------------------------
    def _model_turn(self) -> bool:
        """One streamed turn, saved. False when the time budget ran out during it (and it stopped)."""
        investigation = self.investigation
        messages = investigation.messages
        text = TextStream(
            # The model's text as it streams: a NUL it wrote would fail the event's save (its turn is
            # cleaned as it is saved, _as_saved; tool results at the gateway).
            lambda chunk, block: self._event(Kind.TEXT, {"text": storable(chunk), "block": f"{len(messages)}.{block}"})
        )
        max_tokens = min(settings.MODEL_MAX_TOKENS, investigation.budget_tokens - investigation.tokens_used)
        request = llm.cached_request(system=SYSTEM_PROMPT, tools=config.offered_tools(), messages=as_sent(messages))
        release_connection()  # a turn takes seconds, and a pool shared by hundreds of turns must not wait on it
        deadline = Deadline(self._time_left())
        final = None
        try:
            with (
                deadline,
                llm.client(time_left_s=deadline.seconds).messages.stream(
                    model=investigation.model, max_tokens=max_tokens, **request
                ) as stream,
                deadline.watching(stream.response),
            ):
                for event in stream:
                    if deadline.expired:
                        break
                    if event.type == "content_block_start":
                        text.start(event.index)
                    elif event.type == "text":
                        text.add(event.text)
                    elif event.type == "content_block_stop":
                        text.flush()
                if not deadline.expired:
                    final = stream.get_final_message()
        except Exception:
            if not (deadline.expired or self._time_left() <= 0):  # else it is the shut connection or the timeout
                raise
        text.flush()
        if deadline.expired or final is None:
            self._stop(self._time_budget_reason())
            return False
        content = [_as_saved(block) for block in final.content]
        content = [block for block in content if block.get("type") != "text" or block.get("text")]
        turn = {
            "role": "assistant",
            "content": content or [{"type": "text", "text": "(no answer)"}],
            "stop_reason": final.stop_reason,
        }
        used = TokenUsage.of(final)
        usage = investigation.usage + used
        self._save(
            messages=[*messages, turn],
            tool_results={},
            tokens_used=investigation.tokens_used + used.total,  # all four kinds: usage.py says why
            input_tokens=usage.input,
            cache_creation_tokens=usage.cache_creation,
            cache_read_tokens=usage.cache_read,
            output_tokens=usage.output,
        )
        return True

    def _tell_related(self) -> bool:
        """Tell the model of the alerts that joined since it was last told, as data (saved, so a worker taking
        over tells none twice): before a turn, in the message it answers; after its last word, in a message
        of their own asking it to conclude again. Whether there were any."""
        investigation = self.investigation
        if not investigation.alert.group_key:  # never grouped (typed in the console, or its integration's `none`)
            return False
        new = list(
            investigation.related_alerts.filter(pk__gt=investigation.related_told)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        if not new:
            return False
        block = related_alerts(list(Alert.objects.filter(pk__in=new[-RELATED_SHOWN:]).order_by("pk")), len(new))
        *before, last = investigation.messages
        if last["role"] == "user":
            messages = [*before, {**last, "content": [*last["content"], block]}]
        else:
            messages = [*before, last, {"role": "user", "content": [block, {"type": "text", "text": CONCLUDE_AGAIN}]}]
        self._save(messages=messages, related_told=new[-1])
        return True

    def _call_tools(self, uses: list[dict]) -> bool:
        """Answer the last turn's tool calls, skipping those answered before a restart. False when it stopped.

        Its reads run together (at most PARALLEL_READS at once), then its refused calls and writes one
        by one, in order; the answers go back in the calls' order, whatever order they completed in."""
        investigation = self.investigation
        turn = len(investigation.messages) - 1
        uses_keys_refusals = zip(uses, _result_keys(uses), _refusals(investigation.messages), strict=True)
        calls = [ToolCall(f"{turn}.{position}", *each) for position, each in enumerate(uses_keys_refusals)]
        progress = Progress(self.id, self.owner, investigation.tool_results, investigation.tool_calls_used)
        pending = [call for call in calls if call.key not in progress.results]
        for call in (call for call in calls if call.key in progress.results):  # kept before a restart
            self._shown(call, progress.results[call.key])
        reads = [call for call in pending if call.is_read]
        if reads:
            if stop := self._over_budget(tool_calls=True):
                self._stop(stop)
                return False
            left = investigation.budget_tool_calls - investigation.tool_calls_used  # reserved before any starts
            self._read_together(reads[:left], progress)
            unmade = len(reads) > left or any(call.key not in progress.results for call in reads[:left])
            if unmade and (stop := self._over_budget(tool_calls=True)):  # the rest: never made
                self._stop(stop)
                return False
        for call in (call for call in pending if not call.is_read):
            asked_before = call.gated and investigation.action_requests.filter(tool_use_id=call.use["id"]).exists()
            if not asked_before and (stop := self._over_budget(tool_calls=True)):
                self._stop(stop)
                return False
            self._announce(call)
            result = self._make(call, progress)
            if result is None:  # an analyst decides first: this worker is released until then
                services.suspend(
                    self.id,
                    self.owner,
                    waiting_for=f"Waiting for an analyst to decide on {call.use['name']}.",
                    tool_results=progress.results,
                )
                return False
            self._recorded(call, result, progress)
        answers = [
            {
                "type": "tool_result",
                "tool_use_id": call.use["id"],
                "content": tool_result_content(progress.results[call.key], _external_server(call.use["name"])),
                "is_error": progress.results[call.key].get("status") == "error",
            }
            for call in calls
        ]
        self._save(messages=[*investigation.messages, {"role": "user", "content": answers}], tool_results={})
        return True

    def _read_together(self, reads: list["ToolCall"], progress: "Progress") -> None:
        """Make these reads at the same time, each result recorded as it completes."""
        for call in reads:
            self._announce(call)
        release_connection()  # announced before a restart, it only read: no connection held while they run
        with ThreadPoolExecutor(max_workers=min(settings.PARALLEL_READS, len(reads))) as pool:
            made = {pool.submit(self._make_on_own_thread, call, progress): call for call in reads}
            for future in as_completed(made):  # a lease lost: the calls under way finish, then it stops
                if (result := future.result()) is not None:
                    self._recorded(made[future], result, progress)

    def _make_on_own_thread(self, call: "ToolCall", progress: "Progress") -> dict | None:
        """The read's result; None when the time budget ran out while it waited for its place (never made)."""
        try:
            return self._make(call, progress) if self._time_left() > 0 else None
        finally:
            release_connection()  # the pool thread's connection, back to the worker's pool

    def _make(self, call: "ToolCall", progress: "Progress") -> dict | None:
        """Make one call (or refuse it, or ask for it): its result, kept; None while an analyst decides."""
        use = call.use
        context = replace(self.context, tool_use_id=call.tool_use_id, keep=partial(progress.keep, call.key))
        if call.refusal is not None:
            result = self.gateway.refuse(use["name"], use["input"], context, call.refusal)
        elif call.gated:
            result = self._gated(use, context)
        else:
            result = self.gateway.call(use["name"], use["input"], context)
        if result is not None and call.key not in progress.results and not progress.lost:
            progress.keep(call.key, result)  # a write's decided result: no audit record of ours kept it
        return result

    def _announce(self, call: "ToolCall") -> None:
        resumed = self.resumed_turn is not None and call.call.startswith(self.resumed_turn)
        if resumed and self.investigation.events.filter(kind=Kind.TOOL_CALL, data__call=call.call).exists():
            return  # announced before a restart
        found = call.found
        self._event(
            Kind.TOOL_CALL,
            {
                "tool_use_id": call.tool_use_id,
                "call": call.call,
                "name": call.use["name"],
                "server": found[0].name if found else "",
                "write": bool(found and found[1].write),
                "input": call.use["input"],
            },
        )

    def _shown(self, call: "ToolCall", result: dict) -> None:
        """A result kept before a restart is in the transcript: its event is written after the result is kept (in
        its own transaction), so a run stopped between the two, or by another read's failure, left it out."""
        resumed = self.resumed_turn is not None and call.call.startswith(self.resumed_turn)
        if resumed and not self.investigation.events.filter(kind=Kind.TOOL_RESULT, data__call=call.call).exists():
            self._result_event(call, result)

    def _recorded(self, call: "ToolCall", result: dict, progress: "Progress") -> None:
        if progress.lost:  # another worker holds it now: the records stand, and this one stops
            raise LeaseLost(self.id)
        self.investigation.tool_results, self.investigation.tool_calls_used = progress.results, progress.used
        self._result_event(call, result)

    def _result_event(self, call: "ToolCall", result: dict) -> None:
        self._event(
            Kind.TOOL_RESULT,
            {"tool_use_id": call.tool_use_id, "call": call.call, "name": call.use["name"], "result": result},
        )

    def _gated(self, use: dict, context: CallContext) -> dict | None:
        """A write: its result once an analyst decided (or its policy needs no approval), else None. A call asked
        for before keeps its request's decision whatever the policy says now: a rejection is never made."""
        asked = self.investigation.action_requests.filter(tool_use_id=use["id"]).first()
        if asked is None and not policy_for(use["name"]).requires_approval:  # kept with its audit record, as a read is
            return self.gateway.call(use["name"], use["input"], replace(context, approval=f"policy:{use['name']}"))
        request = asked or request_action(self.investigation, use, owner=self.owner, gateway=self.gateway)
        if isinstance(request, dict):  # refused at the boundary: invalid arguments
            return request
        return request.result if request.is_final else None

    def _concluded(self, last: dict) -> bool:
        """Finish with the model's last word, unless alerts joined meanwhile: then they are told and it is
        asked again (False). The row is locked as intake locks it to join (intake.open_investigation_of), so
        an alert joins before this check, and is told, or after the finish, and starts its own investigation."""
        with transaction.atomic():
            list(Investigation.objects.select_for_update().filter(pk=self.id).values_list("pk"))  # the lock only
            if not self._over_budget(tokens=True) and self._tell_related():
                return False
            self._conclude(last)
        return True

    def _conclude(self, last: dict) -> None:
        text = "".join(block.get("text", "") for block in last["content"] if block.get("type") == "text")
        verdict = parse_verdict(text)
        if verdict is None:
            reason = "The model ended without a verdict."
            if not _finished(last, "end_turn", "stop_sequence"):
                reason = f"The model's answer ended ({_stop_reason(last)}) before a verdict."
            return services.finish(
                self.id,
                self.owner,
                status=Status.COMPLETED,
                verdict=Verdict.INCONCLUSIVE,
                summary=reason,
                end_reason=reason,
            )
        evidence = verdict.get("evidence") if isinstance(verdict.get("evidence"), list) else []
        services.finish(
            self.id,
            self.owner,
            status=Status.COMPLETED,
            verdict=verdict["verdict"],
            summary=str(verdict.get("summary") or "")[:4000],
            evidence=[str(item)[:500] for item in evidence[:50]],
        )

    # -- budgets ------------------------------------------------------------------------------
    def _over_budget(self, *, tokens: bool = False, tool_calls: bool = False) -> str | None:
        investigation = self.investigation
        if tokens and investigation.tokens_used >= investigation.budget_tokens:
            return f"The token budget ({investigation.budget_tokens} tokens) is exhausted."
        if tool_calls and investigation.tool_calls_used >= investigation.budget_tool_calls:
            return f"The tool-call budget ({investigation.budget_tool_calls} calls) is exhausted."
        if self._time_left() <= 0:
            return self._time_budget_reason()
        return None

    def _time_left(self) -> float:
        investigation = self.investigation
        elapsed = (timezone.now() - investigation.started_at).total_seconds() - investigation.waited_seconds
        return investigation.budget_seconds - elapsed

    def _time_budget_reason(self) -> str:
        return f"The time budget ({self.investigation.budget_seconds} s) is exhausted."

    def _stop(self, reason: str) -> None:
        summary = (
            f"Stopped before a conclusion: {reason[0].lower()}{reason[1:]} The transcript shows what was established."
        )
        services.finish(
            self.id,
            self.owner,
            status=Status.COMPLETED,
            verdict=Verdict.INCONCLUSIVE,
            summary=summary,
            end_reason=reason,
        )

    # -- state --------------------------------------------------------------------------------
    # Each write gives its connection back: between them this thread waits on the model or a tool.
    def _save(self, **fields) -> None:
        services.save(self.id, self.owner, **fields)
        release_connection()
        for name, value in fields.items():
            setattr(self.investigation, name, value)

    def _event(self, kind: str, data: dict) -> None:
        record_event(self.id, kind, data, owner=self.owner)
        release_connection()


@dataclass(frozen=True)
class ToolCall:
    """One tool call of the last turn: its place (`call`, "turn.position"), what the model sent, where its
    result is kept (`key`), and the typed error that answers it instead, if it is refused."""

    call: str
    use: dict
    key: str
    refusal: dict | None

    @cached_property
    def found(self):
        return find_tool(self.use["name"]) if isinstance(self.use["name"], str) else None

    @property
    def tool_use_id(self) -> str:
        return str(self.use["id"])[:64]

    @property
    def gated(self) -> bool:
        """A write, made only through the human gate."""
        return self.refusal is None and bool(self.found and self.found[1].write)

    @property
    def is_read(self) -> bool:
        return self.refusal is None and not self.gated


class Progress:
    """A turn's results so far and the tool calls used, saved in the transaction of each call's audit
    record (CallContext.keep). Its calls complete in any order, so each save holds every result so
    far: a worker taking over finds each completed call, and makes none of them again."""

    def __init__(self, investigation_id: int, owner: str, results: dict, used: int):
        self.investigation_id, self.owner = investigation_id, owner
        self.results, self.used = dict(results), used  # replaced, never changed: read by the loop meanwhile
        self.lost = False  # another worker holds the investigation now
        self._lock = threading.Lock()

    def keep(self, key: str, result: dict) -> None:
        with self._lock:
            results, used = {**self.results, key: result}, self.used + 1
            try:
                services.save(self.investigation_id, self.owner, tool_results=results, tool_calls_used=used)
            except LeaseLost:  # the audit record stands; the loop stops once the calls under way finish
                self.lost = True
                return
            self.results, self.used = results, used


# -- what the model sent, and what the API is sent ----------------------------------------------
TOOL_USE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # the API's shape of an id, and what the audit record holds


def _as_saved(block) -> dict:
    """A content block as JSON; a tool call's input kept as sent (a list, a string, null), but for what
    no database stores (core.inputs.storable: a NUL the model wrote would fail the turn's save)."""
    if block.type != "tool_use":
        return storable(block.model_dump(mode="json", exclude_none=True))
    saved = block.model_dump(mode="json", exclude_none=True, exclude={"input"})
    return storable({**saved, **{name: getattr(block, name, None) for name in ("id", "name", "input")}})


def _external_server(name) -> str:
    """The external server a tool name belongs to, "" for a built-in: its results are a third party's data."""
    if not isinstance(name, str) or external.SEPARATOR not in name or find_builtin(name) is not None:
        return ""
    server = name.split(external.SEPARATOR, 1)[0]
    return server if external.SERVER_NAME.match(server) else "unnamed"  # the model's own name: never quoted raw


def _finished(turn: dict, *stop_reasons: str) -> bool:
    return turn.get("stop_reason", stop_reasons[0]) in stop_reasons  # turns saved before stop reasons were: finished


def _stop_reason(turn: dict) -> str:
    return f"stop reason {turn['stop_reason']}" if turn.get("stop_reason") else "cut off without a stop reason"


def _result_keys(uses: list[dict]) -> list[str]:
    """Where each call's result is kept: its id, or its position when the turn used the id already."""
    seen, keys = set(), []
    for position, use in enumerate(uses):
        ident = use["id"] if isinstance(use["id"], str) else None
        keys.append(ident if ident is not None and ident not in seen else f"#{position}")
        seen.add(ident)
    return keys


def _refusals(messages: list[dict]) -> list[dict | None]:
    """For each tool call of the last turn: None to make it, or the typed error that answers it instead."""
    last = messages[-1]
    earlier = {
        block.get("id")
        for message in messages[:-1]
        if message["role"] == "assistant"
        for block in message["content"]
        if block.get("type") == "tool_use" and isinstance(block.get("id"), str)
    }
    refusals = []
    for use in (block for block in last["content"] if block.get("type") == "tool_use"):
        ident = use["id"]
        if not _finished(last, "tool_use"):
            refusals.append(
                error(
                    Reason.INCOMPLETE_TURN,
                    retryable=True,
                    guidance=f"Your turn ended ({_stop_reason(last)}) before it finished asking for tools, so this call "
                    "was not made: its arguments may be incomplete. If you still need it, call it again, briefly.",
                )
            )
        elif not isinstance(ident, str) or not TOOL_USE_ID.match(ident):
            refusals.append(
                error(
                    Reason.INVALID_TOOL_USE_ID,
                    retryable=True,
                    guidance="This call's tool_use id is malformed, so it was not made. If you still need it, call it again.",
                )
            )
        elif ident in earlier:
            refusals.append(
                error(
                    Reason.INVALID_TOOL_USE_ID,
                    retryable=True,
                    guidance="This call reused the tool_use id of an earlier call, so it was not made, and that call's "
                    "result is not its result. If you still need it, call it again.",
                )
            )
        else:
            refusals.append(None)
        if isinstance(ident, str):
            earlier.add(ident)
    return refusals


def as_sent(messages: list[dict]) -> list[dict]:
    """The saved conversation as the API accepts it: role and content only, every tool input an
    object, every tool_use id well formed and used once (a bad one renamed, with its result)."""
    sent, renamed, seen = [], [], set()
    for i, message in enumerate(messages):
        content = message["content"]
        if isinstance(content, list):
            content = [dict(block) for block in content]
            if message["role"] == "user":  # results answer the turn before's calls in order
                results = [block for block in content if block.get("type") == "tool_result"]
                for block, new_id in zip(results, renamed, strict=False):  # results past the calls stay as sent
                    block["tool_use_id"] = new_id or block["tool_use_id"]
            renamed = []
            for j, block in enumerate(content):
                if block.get("type") != "tool_use":
                    continue
                if not isinstance(block.get("input"), dict):
                    block["input"] = {}
                ident = block.get("id")
                bad = not isinstance(ident, str) or not TOOL_USE_ID.match(ident) or ident in seen
                renamed.append(f"toolu_gatehouse_{i}_{j}" if bad else None)
                block["id"] = renamed[-1] or ident
                if not bad:
                    seen.add(ident)
        sent.append({"role": message["role"], "content": content})
    return sent


class Deadline:
    """The time budget during a model turn: when it runs out the model's connection is shut, so a
    stream that stalls, trickles or pings ends then, not when the model stops sending."""

    def __init__(self, seconds: float):
        self.seconds = max(0.0, seconds)
        self.expired = False
        self._socket = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(self.seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self):
        self._timer.start()
        return self

    def __exit__(self, *exc):
        self._timer.cancel()

    @contextmanager
    def watching(self, response):
        """Shut this response's socket at the deadline (the offline model has none: checked per event)."""
        network = response.extensions.get("network_stream")
        with self._lock:
            self._socket = network.get_extra_info("socket") if network is not None else None
            if self.expired:
                self._shut()
        try:
            yield
        finally:
            with self._lock:
                self._socket = None  # its connection goes back to the pool: never shut it later

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            self._shut()

    def _shut(self) -> None:
        if self._socket is not None:
            with suppress(OSError):
                self._socket.shutdown(socket.SHUT_RDWR)


class TextStream:
    """Streamed text, saved and published in pieces at most every TEXT_FLUSH_MS per block."""

    def __init__(self, emit):
        self.emit = emit
        self.block = 0
        self.pending: list[str] = []
        self.flushed_at = time.monotonic()

    def start(self, block: int) -> None:
        self.flush()
        self.block = block

    def add(self, text: str) -> None:
        self.pending.append(text)
        if (time.monotonic() - self.flushed_at) * 1000 >= settings.TEXT_FLUSH_MS:
            self.flush()

    def flush(self) -> None:
        chunk = "".join(self.pending)
        self.pending = []
        self.flushed_at = time.monotonic()
        if chunk:
            self.emit(chunk, self.block)
