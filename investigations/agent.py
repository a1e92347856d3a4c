"""The agent loop: one investigation, step by step, with its state saved after every step.

A step is either one model turn (streamed; its text saved and published as it arrives) or one
tool call of the turn before. After each step the conversation, the tool results so far and
the budgets used are saved, fenced by the worker's lease. A worker that takes over a stalled
investigation therefore resumes from the last saved step and repeats no tool call that had
completed.

The control layer, not the model, enforces the budgets (tool calls, tokens, wall time): when
one runs out, the investigation ends as inconclusive, with the reason.
"""

import json
import logging
import threading
import time
from dataclasses import dataclass, replace

import anthropic
from django.conf import settings
from django.db import connection
from django.utils import timezone

from investigations import actions, llm, services
from investigations.events import LeaseLost, record_event
from investigations.models import Event, Investigation
from investigations.offline_model import parse_verdict
from investigations.prompts import SYSTEM_PROMPT, first_message
from toolserver import config
from toolserver.catalog import find_tool
from toolserver.gateway import CallContext, Gateway

log = logging.getLogger(__name__)
Status, Verdict, Kind = Investigation.Status, Investigation.Verdict, Event.Kind


def run(investigation_id: int) -> None:
    """Run (or resume) an investigation, if no live worker holds it. Safe to call twice."""
    owner = services.claim(investigation_id)
    if owner is None:
        return
    with Heartbeat(investigation_id, owner):
        try:
            Agent(investigation_id, owner).run()
        except LeaseLost:
            log.warning("investigation %s: lease lost to another worker; stopping here", investigation_id)
        except anthropic.APIError as exc:
            _fail(investigation_id, owner, f"The model could not be reached ({type(exc).__name__}).")
        except Exception as exc:
            log.exception("investigation %s failed", investigation_id)
            _fail(investigation_id, owner, f"Internal error ({type(exc).__name__}); see the worker log.")


def _fail(investigation_id: int, owner: str, reason: str) -> None:
    try:
        services.finish(investigation_id, owner, status=Status.FAILED, end_reason=reason)
    except LeaseLost:
        pass


class Agent:
    def __init__(self, investigation_id: int, owner: str):
        self.owner = owner
        self.investigation = Investigation.objects.select_related("alert").get(pk=investigation_id)
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
            self._event(Kind.STATUS, {"status": Status.RUNNING, "message": f"Investigating with the {investigation.model_name}."})
        else:
            self._event(Kind.STATUS, {"status": Status.RUNNING, "message": "Resumed from the last saved step."})
        while True:
            last = investigation.messages[-1]
            if last["role"] == "assistant":
                uses = [block for block in last["content"] if block.get("type") == "tool_use"]
                if not uses:
                    return self._conclude(last)
                if not self._call_tools(uses):
                    return
            else:
                if stop := self._over_budget(tokens=True):
                    return self._stop(stop)
                self._model_turn()

    # -- steps --------------------------------------------------------------------------------
    def _model_turn(self) -> None:
        investigation = self.investigation
        messages = investigation.messages
        text = TextStream(lambda chunk, block: self._event(Kind.TEXT, {"text": chunk, "block": f"{len(messages)}.{block}"}))
        max_tokens = min(settings.MODEL_MAX_TOKENS, investigation.budget_tokens - investigation.tokens_used)
        with llm.client().messages.stream(
            model=investigation.model,
            max_tokens=max_tokens,
            system=SYSTEM_PROMPT,
            tools=config.offered_tools(),
            messages=messages,
        ) as stream:
            for event in stream:
                if event.type == "content_block_start":
                    text.start(event.index)
                elif event.type == "text":
                    text.add(event.text)
                elif event.type == "content_block_stop":
                    text.flush()
            final = stream.get_final_message()
        text.flush()
        content = [block.model_dump(mode="json", exclude_none=True) for block in final.content]
        content = [block for block in content if block.get("type") != "text" or block.get("text")]
        self._save(
            messages=[*messages, {"role": "assistant", "content": content or [{"type": "text", "text": "(no answer)"}]}],
            tool_results={},
            tokens_used=investigation.tokens_used + final.usage.input_tokens + final.usage.output_tokens,
        )

    def _call_tools(self, uses: list[dict]) -> bool:
        """Answer the last turn's tool calls, skipping those answered before a restart. False when it stopped."""
        investigation = self.investigation
        results = dict(investigation.tool_results)
        for use in uses:
            if use["id"] in results:
                continue
            found = find_tool(use["name"])
            gated = bool(found and found[1].write)
            asked_before = gated and investigation.action_requests.filter(tool_use_id=use["id"]).exists()
            if not asked_before and (stop := self._over_budget(tool_calls=True)):
                self._stop(stop)
                return False
            if not investigation.events.filter(kind=Kind.TOOL_CALL, data__tool_use_id=use["id"]).exists():
                self._event(Kind.TOOL_CALL, {
                    "tool_use_id": use["id"],
                    "name": use["name"],
                    "server": found[0].name if found else "",
                    "write": bool(found and found[1].write),
                    "input": use["input"],
                })
            result = self._gated(use) if gated else self.gateway.call(use["name"], use["input"], replace(self.context, tool_use_id=use["id"]))
            if result is None:  # an analyst decides first: this worker is released until then
                services.suspend(self.id, self.owner, waiting_for=f"Waiting for an analyst to decide on {use['name']}.",
                                 tool_results=results)
                return False
            results[use["id"]] = result
            self._save(tool_results=results, tool_calls_used=investigation.tool_calls_used + 1)
            self._event(Kind.TOOL_RESULT, {"tool_use_id": use["id"], "name": use["name"], "result": result})
        answers = [
            {
                "type": "tool_result",
                "tool_use_id": use["id"],
                "content": json.dumps(results[use["id"]]),
                "is_error": results[use["id"]].get("status") == "error",
            }
            for use in uses
        ]
        self._save(messages=[*investigation.messages, {"role": "user", "content": answers}], tool_results={})
        return True

    def _gated(self, use: dict) -> dict | None:
        """A write: its result once an analyst decided (or its policy needs no approval), else None."""
        if not actions.policy_for(use["name"]).requires_approval:
            return self.gateway.call(use["name"], use["input"], replace(self.context, approval=f"policy:{use['name']}", tool_use_id=use["id"]))
        request = actions.request_action(self.investigation, use, owner=self.owner, gateway=self.gateway)
        if isinstance(request, dict):  # refused at the boundary: invalid arguments
            return request
        return request.result if request.is_final else None

    def _conclude(self, last: dict) -> None:
        text = "".join(block.get("text", "") for block in last["content"] if block.get("type") == "text")
        verdict = parse_verdict(text)
        if verdict is None:
            reason = "The model ended without a verdict."
            return services.finish(self.id, self.owner, status=Status.COMPLETED, verdict=Verdict.INCONCLUSIVE,
                                   summary=reason, end_reason=reason)
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
        elapsed = (timezone.now() - investigation.started_at).total_seconds() - investigation.waited_seconds
        if elapsed >= investigation.budget_seconds:
            return f"The time budget ({investigation.budget_seconds} s) is exhausted."
        return None

    def _stop(self, reason: str) -> None:
        summary = f"Stopped before a conclusion: {reason[0].lower()}{reason[1:]} The transcript shows what was established."
        services.finish(self.id, self.owner, status=Status.COMPLETED, verdict=Verdict.INCONCLUSIVE,
                        summary=summary, end_reason=reason)

    # -- state --------------------------------------------------------------------------------
    def _save(self, **fields) -> None:
        services.save(self.id, self.owner, **fields)
        for name, value in fields.items():
            setattr(self.investigation, name, value)

    def _event(self, kind: str, data: dict) -> None:
        record_event(self.id, kind, data, owner=self.owner)


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


@dataclass
class Heartbeat:
    """Renews the worker's lease while it works, so only a dead worker's investigation is taken over."""

    investigation_id: int
    owner: str

    def __enter__(self):
        services.holding(self.investigation_id, self.owner)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"lease-{self.investigation_id}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        services.holding(self.investigation_id, None)
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        try:
            while not self._stop.wait(settings.INVESTIGATION_LEASE_S / 3):
                if not services.renew(self.investigation_id, self.owner):
                    return
        except Exception:
            log.warning("could not renew the lease of investigation %s", self.investigation_id, exc_info=True)
        finally:
            connection.close()
