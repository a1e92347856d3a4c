"""A SOC triage playbook: reads the alert and the tool results so far from the request, and says
what to do next. It keeps no state between requests and follows nothing the data says."""

import hashlib
import ipaddress
import json
import logging
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from investigations.runs.prompts import EXTERNAL_RESULT_TAG
from investigations.runs.verdict import verdict_block

log = logging.getLogger(__name__)


OFFLINE_MODEL_NAME = "offline model"  # how the console names it wherever it shows

# The playbook's knobs.
LOOKBACK_HOURS = 24
RETRY_LOOKBACK_HOURS = 6  # a retryable failure is retried once, over a narrower window
RESULT_LIMIT = 50
MAX_LOOKUPS = 4
REPEATED_CONNECTIONS = 5  # this many connections to one domain is worth a reputation check

ALERT_OPEN, ALERT_CLOSE = "<alert>", "</alert>"


# ======================================================================================
# Reading the conversation
# ======================================================================================
# The shapes the tool schemas accept (toolserver/schemas.py); anything else is not queried.
HOST_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
USER_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
SAFE_TOKEN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._:@/#()-]{0,79}$")  # a short backend value, safe to repeat
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:#/-]{0,63}$")  # an alert id: no spaces, so no sentences
BUILTIN_ACCOUNTS = {"system", "localsystem", "local service", "network service", "anonymous logon"}
SEVERITIES = ("low", "medium", "high", "critical")


@dataclass(frozen=True)
class Alert:
    """The alert's fields the playbook uses. Free text (title, details) is never repeated or obeyed."""

    external_id: str | None
    severity: str | None
    host: str | None
    user: str | None
    details: dict

    @property
    def name(self) -> str:
        return f"alert {self.external_id}" if self.external_id else "the alert"

    @classmethod
    def from_json(cls, data: dict) -> "Alert":
        def matching(value, pattern):
            return value if isinstance(value, str) and pattern.match(value) else None

        user = matching(data.get("user"), USER_PATTERN)
        if user and user.lower() in BUILTIN_ACCOUNTS:
            user = None  # a machine account has no sign-ins or directory entry to check
        severity = data.get("severity")
        return cls(
            external_id=matching(data.get("external_id"), ID_PATTERN),
            severity=severity if severity in SEVERITIES else None,
            host=matching(data.get("host"), HOST_PATTERN),
            user=user,
            details=data.get("details") if isinstance(data.get("details"), dict) else {},
        )


def split_alert(text: str) -> tuple[Alert | None, str]:
    """The alert in <alert>{json}</alert>, and the text around it.

    The JSON is read with a decoder, not by searching for the closing marker, so a "</alert>"
    inside one of its strings cannot end it early and smuggle text out as if it were ours.
    """
    start = text.find(ALERT_OPEN)
    if start < 0:
        return None, text
    offset = re.compile(r"\s*").match(text, start + len(ALERT_OPEN)).end()
    try:
        data, end = json.JSONDecoder().raw_decode(text, offset)
    except ValueError:
        return None, text
    close = text.find(ALERT_CLOSE, end)
    if not isinstance(data, dict) or close < 0 or text[end:close].strip():
        return None, text
    return Alert.from_json(data), text[:start] + text[close + len(ALERT_CLOSE) :]


@dataclass
class Call:
    """One tool call the model made, and the envelope that came back for it."""

    id: str
    name: str
    input: dict
    result: dict | None = None

    @property
    def ok(self) -> bool:
        return self.result is not None and self.result.get("status") == "ok"

    @property
    def failed(self) -> bool:
        return not self.ok

    @property
    def reason(self) -> str:
        reason = (self.result or {}).get("reason")
        return reason if isinstance(reason, str) and re.match(r"^[a-z0-9_]{1,60}$", reason) else "error"

    @property
    def retryable(self) -> bool:
        return self.failed and (self.result or {}).get("retryable") is True

    @property
    def data(self) -> Any:
        return self.result.get("data") if self.ok else None

    def items(self) -> list[dict]:
        """A list result's items (malformed entries dropped)."""
        data = self.data
        return [item for item in data if isinstance(item, dict)] if isinstance(data, list) else []


def read_envelope(content: Any) -> dict:
    """A tool_result's content (a string or text blocks) as the envelope it carries.

    Anything that is not an envelope counts as a failed check: an unreadable answer is not
    evidence, least of all evidence that nothing was found (rule 5).
    """
    text = (
        content
        if isinstance(content, str)
        else "".join(
            block.get("text", "")
            for block in content_blocks(content)
            if isinstance(block, dict) and block.get("type") == "text"
        )
    )
    wrapped = re.search(rf"<{EXTERNAL_RESULT_TAG}>(.*)</{EXTERNAL_RESULT_TAG}>", text, re.DOTALL)
    try:
        envelope = json.loads(wrapped.group(1) if wrapped else text)  # an external server's, wrapped as data
    except ValueError:
        envelope = None
    if isinstance(envelope, dict) and envelope.get("status") in ("ok", "error"):
        return envelope
    return {"status": "error", "reason": "unreadable_result", "retryable": False, "guidance": "Not an envelope."}


@dataclass
class Conversation:
    alert: Alert | None
    offered: frozenset[str]
    graph: str | None  # the offered knowledge-graph tool, if any (graph_tool)
    calls: list[Call]
    latest: list[Call]  # answered in the final user message: what the next turn comments on
    budget_exhausted: bool

    @classmethod
    def from_request(cls, body: dict) -> "Conversation":
        tools = [tool for tool in body.get("tools") or [] if isinstance(tool, dict)]
        offered = frozenset(tool["name"] for tool in tools)
        graph = graph_tool({tool["name"]: tool.get("input_schema") for tool in tools})
        alert, calls, latest, budget_exhausted = None, {}, [], False
        messages = body["messages"]
        for position, message in enumerate(messages):
            is_last = position == len(messages) - 1
            for block in content_blocks(message["content"]):
                kind = block.get("type")
                if message["role"] == "assistant" and kind == "tool_use":
                    tool_input = block.get("input") if isinstance(block.get("input"), dict) else {}
                    calls[block.get("id")] = Call(block.get("id"), str(block.get("name")), tool_input)
                elif message["role"] == "user" and kind == "tool_result":
                    call = calls[block.get("tool_use_id")]  # validate_request made sure it exists
                    call.result = read_envelope(block.get("content", ""))
                    budget_exhausted |= call.failed and _says_budget_exhausted(call.reason)
                    if is_last:
                        latest.append(call)
                elif message["role"] == "user" and kind == "text":
                    text = str(block.get("text", ""))
                    if position == 0 and alert is None:
                        alert, text = split_alert(text)  # only the first user message carries the alert
                    budget_exhausted |= _says_budget_exhausted(text)
        return cls(alert, offered, graph, list(calls.values()), latest, budget_exhausted)


# ======================================================================================
# A knowledge graph an admin offers: where a confirmed finding is recorded
# ======================================================================================
GRAPH_ACTION = "create_entities"
GRAPH_ENTITY = ("name", "entityType", "observations")
GRAPH_OBSERVATION_LIMIT = 300


def graph_tool(schemas: dict[str, Any]) -> str | None:
    """The offered external tool that adds entities to a knowledge graph (server-memory's create_entities).

    Recognised by its name and the shape of its accepted schema, never by what its description
    says: `<server>__create_entities` whose one argument, `entities`, is a list of objects with a
    name, an entityType and a list of observations (and requires nothing else). Several: the first
    by name, so a resumed investigation picks the same one.
    """
    for name in sorted(schemas):
        server, _, action = name.partition("__")
        schema = schemas[name]
        if not server or action != GRAPH_ACTION or not isinstance(schema, dict):
            continue
        properties = schema.get("properties")
        if (
            not isinstance(properties, dict)
            or set(properties) != {"entities"}
            or not isinstance(properties["entities"], dict)
        ):
            continue
        items = properties["entities"].get("items")
        fields = items.get("properties") if isinstance(items, dict) else None
        required = items.get("required", []) if isinstance(items, dict) else None
        if (
            isinstance(fields, dict)
            and isinstance(required, list)
            and set(GRAPH_ENTITY) <= set(fields)
            and set(required) <= set(GRAPH_ENTITY)
            and properties["entities"].get("type") == "array"
        ):
            return name
    return None


def _says_budget_exhausted(text: str) -> bool:
    lowered = text.lower()
    return "budget" in lowered and "exhausted" in lowered


def content_blocks(content: Any) -> list:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return content if isinstance(content, list) else []


# ======================================================================================
# Reading tool results: findings, and leads worth an intel lookup
# ======================================================================================
OFFICE_APPS = {"winword.exe", "excel.exe", "outlook.exe", "powerpnt.exe", "onenote.exe", "msaccess.exe", "mspub.exe"}
POWERSHELL = {"powershell.exe", "pwsh.exe"}
# Where droppers stage payloads; installed software lives elsewhere.
STAGING_DIRS = (
    "\\temp\\",
    "\\tmp\\",
    "\\downloads\\",
    "\\programdata\\",
    "\\users\\public\\",
    "\\appdata\\roaming\\",
    "\\$recycle.bin\\",
)
SHA256 = re.compile(r"^[0-9a-f]{64}$")
DOMAIN = re.compile(r"^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


@dataclass(frozen=True)
class Lead:
    """Something suspicious in a result, and the indicator that could confirm it."""

    why: str
    scope: str  # "host" (found on the host), "account" (the user's sign-ins) or "alert"
    evidence: str  # the tool_use id it came from ("" for the alert itself)
    indicator: tuple[str, str] | None  # (kind, value) for lookup_indicator
    clears_if_benign: bool = True  # encoded PowerShell stays suspicious even though powershell.exe is benign
    priority: int = 9  # lower is looked up first; only MAX_LOOKUPS are


@dataclass(frozen=True)
class Finding:
    text: str  # one or two sentences for the reasoning stream
    leads: tuple[Lead, ...] = ()


def analyse(call: Call, alert: Alert, processes: Call | None) -> Finding:
    """What a successful read shows. `processes` helps name the hash of a program seen connecting out."""
    analysers = {
        "search_logins": lambda: _logins(call, alert),
        "get_user": lambda: _account(call),
        "get_host": lambda: _host(call),
        "get_process_tree": lambda: _processes(call),
        "get_network_connections": lambda: _connections(call, processes),
        "search_events": lambda: _events(call),
        "lookup_indicator": lambda: _lookup(call),
    }
    finding = analysers.get(call.name, lambda: Finding(f"{call.name} answered."))()
    if call.ok and call.result.get("truncated"):
        finding = Finding(finding.text + " (The result was capped; more exist.)", finding.leads)
    return finding


def _logins(call: Call, alert: Alert) -> Finding:
    who = call.input.get("user") or call.input.get("host") or "the subject"
    items = call.items()
    if not items:
        return Finding(f"There are no sign-ins for {who} in the window.")
    successes = [item for item in items if item.get("result") == "success"]
    usual = _usual_country(successes)
    leads, seen = [], set()
    for item in successes:
        ip, country = _ip(item.get("source_ip")), _token(item.get("source_country"))
        if ip and country != usual and _is_public(ip) and ip not in seen:
            seen.add(ip)
            away = f", away from the usual {usual}" if usual else ""
            why = f"a successful sign-in as {who} from {ip} ({country}){away}"
            leads.append(Lead(why, "account", call.id, ("ip", ip), priority=0))
    failures = len(items) - len(successes)
    text = f"{who} has {_count(len(items), 'sign-in')} in the window ({len(successes)} successful, {failures} failed)"
    text += f", mostly from {usual}." if usual else "."
    if leads:
        text += " Successful sign-ins from " + ", ".join(lead.indicator[1] for lead in leads) + " stand out."
    else:
        text += " None succeeded from an unusual country."
    return Finding(text, tuple(leads))


def _usual_country(successes: list[dict]) -> str | None:
    """The country most successful sign-ins come from; a tie goes to one seen from inside the network."""
    counts = Counter(_token(item.get("source_country")) for item in successes)
    if not counts:
        return None
    top = max(counts.values())
    tied = sorted(country for country, n in counts.items() if n == top)
    if len(tied) == 1:
        return tied[0]
    inside = sorted(
        {
            _token(item.get("source_country"))
            for item in successes
            if _ip(item.get("source_ip")) and not _is_public(_ip(item.get("source_ip")))
        }
    )
    inside = [country for country in inside if country in tied]
    return inside[0] if len(inside) == 1 else None  # undecided: every outside sign-in is then a lead


def _account(call: Call) -> Finding:
    data = call.data if isinstance(call.data, dict) else {}
    name = _token(data.get("username") or call.input.get("username"))
    facts = [
        "privileged" if data.get("privileged") else "not privileged",
        "MFA on" if data.get("mfa") else "MFA off",
        "already disabled" if data.get("disabled") else "enabled",
    ]
    return Finding(f"Account {name}: {', '.join(facts)}.")


def _host(call: Call) -> Finding:
    data = call.data if isinstance(call.data, dict) else {}
    name = _token(data.get("hostname") or call.input.get("host"))
    text = f"{name} is a {_token(data.get('role'))} of {_token(data.get('criticality'))} criticality"
    return Finding(text + (", already isolated." if data.get("isolated") else ", not isolated."))


def _processes(call: Call) -> Finding:
    host = call.input.get("host", "the host")
    items = sorted(call.items(), key=lambda item: str(item.get("at", "")))  # oldest first: parents before children
    by_pid = {item.get("pid"): item for item in items}
    flagged: set = set()
    leads = []
    for item in items:
        image, parent = _basename(item.get("image")), by_pid.get(item.get("ppid"))
        parent_image = _basename(parent.get("image")) if parent else ""
        reasons, behaviour = [], False
        if parent_image.lower() in OFFICE_APPS:
            reasons.append(f"started by {parent_image}")
            behaviour = True
        if _is_encoded_powershell(item):
            reasons.append("with an encoded command")
            behaviour = True
        if not reasons and parent is not None and parent.get("pid") in flagged:
            reasons.append(f"started by the suspicious {parent_image}")
        if not reasons:
            continue
        flagged.add(item.get("pid"))
        sha256 = _hash(item.get("sha256"))
        leads.append(
            Lead(
                f"{image} {' '.join(reasons)} on {host}",
                "host",
                call.id,
                ("hash", sha256) if sha256 else None,
                clears_if_benign=not behaviour,
                priority=2 if behaviour else 1,  # a dropped payload's hash says more than powershell.exe's
            )
        )
    text = f"{_count(len(items), 'process', 'processes')} on {host} in the window."
    if leads:
        text += " Suspicious: " + "; ".join(lead.why for lead in leads) + "."
    else:
        text += " Nothing stands out: no Office application spawning a shell, no encoded PowerShell."
    return Finding(text, tuple(leads))


def _is_encoded_powershell(item: dict) -> bool:
    """PowerShell takes any prefix of -EncodedCommand (and -ec); -ex is -ExecutionPolicy."""
    if _basename(item.get("image")).lower() not in POWERSHELL:
        return False
    for word in str(item.get("command_line") or "").split():
        flag = word[1:].lower() if word[:1] in "-/" else ""
        if flag == "ec" or (flag.startswith("e") and "encodedcommand".startswith(flag)):
            return True
    return False


def _connections(call: Call, processes: Call | None) -> Finding:
    host = call.input.get("host", "the host")
    items = call.items()
    per_domain = Counter(_domain(item.get("remote_domain")) for item in items)
    per_domain.pop(None, None)
    leads = [
        Lead(f"{n} connections from {host} to {domain}", "host", call.id, ("domain", domain), priority=3)
        for domain, n in per_domain.most_common()
        if n >= REPEATED_CONNECTIONS
    ]
    # A program in a staging folder that talks to the internet: look up its hash if the process
    # tree has it, otherwise the places it talked to.
    hashes = {
        str(item.get("image")).lower(): _hash(item.get("sha256"))
        for item in (processes.items() if processes and processes.ok else [])
        if _hash(item.get("sha256"))
    }
    for image in dict.fromkeys(str(item.get("image")) for item in items if _from_staging_dir(item.get("image"))):
        why = f"{_basename(image)} runs from an unusual folder and connects out from {host}"
        if image.lower() in hashes:
            leads.append(Lead(why, "host", call.id, ("hash", hashes[image.lower()]), priority=1))
            continue
        for item in items:
            if str(item.get("image")) == image:
                domain, ip = _domain(item.get("remote_domain")), _ip(item.get("remote_ip"))
                indicator = ("domain", domain) if domain else ("ip", ip) if ip and _is_public(ip) else None
                if indicator:
                    leads.append(Lead(why, "host", call.id, indicator, priority=3))
    text = f"{_count(len(items), 'outbound connection')} from {host} in the window."
    repeated = [f"{domain} ({n} times)" for domain, n in per_domain.most_common() if n >= REPEATED_CONNECTIONS]
    staged = sorted({_basename(item.get("image")) for item in items if _from_staging_dir(item.get("image"))})
    if repeated:
        text += " Repeated destinations: " + ", ".join(repeated) + "."
    if staged:
        text += " Programs in unusual folders connecting out: " + ", ".join(staged) + "."
    if not repeated and not staged:
        text += " Nothing stands out: no destination contacted repeatedly, no program from an unusual folder."
    return Finding(text, tuple(leads))


def _events(call: Call) -> Finding:
    items = call.items()
    kinds = Counter(_token(item.get("kind")) for item in items)
    listed = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
    return Finding(f"{_count(len(items), 'security event')} in the window" + (f" ({listed})." if listed else "."))


def _lookup(call: Call) -> Finding:
    data = call.data if isinstance(call.data, dict) else {}
    tags = ", ".join(_token(tag) for tag in (data.get("tags") or [])[:4] if isinstance(tag, str))
    confidence = data.get("confidence")
    detail = "; ".join(
        part for part in (f"confidence {confidence}" if isinstance(confidence, int) else "", tags) if part
    )
    text = f"Intel rates {_describe_lookup(call)} {_verdict_of(call)}"
    return Finding(text + (f" ({detail})." if detail else "."))


def _verdict_of(lookup: Call) -> str:
    verdict = lookup.data.get("verdict") if isinstance(lookup.data, dict) else None
    return verdict if verdict in ("malicious", "suspicious", "benign", "unknown") else "unknown"


def alert_leads(alert: Alert) -> list[Lead]:
    """Indicators the alert itself names (remote_ip, source_ip, remote_domain, sha256...): data, looked up last."""
    leads = []
    for key, value in alert.details.items():
        key = str(key).lower()
        if (key == "ip" or key.endswith("_ip")) and _is_public(_ip(value)):
            indicator = ("ip", _ip(value))
        elif (key == "domain" or key.endswith("_domain")) and _domain(value):
            indicator = ("domain", _domain(value))
        elif ("sha256" in key or key in ("hash", "file_hash")) and _hash(value):
            indicator = ("hash", _hash(value))
        else:
            continue
        leads.append(Lead(f"{alert.name} names {_describe_indicator(*indicator)}", "alert", "", indicator, priority=4))
    return leads


def merge_leads(leads: Iterable[Lead]) -> list[Lead]:
    """One lead per indicator, its reasons joined, so it is looked up and reported once.

    An indicator the alert names adds nothing to the same indicator found in the data.
    """
    merged: dict[Any, Lead] = {}
    for lead in sorted(leads, key=lambda lead: lead.scope == "alert"):  # stable: the data's order first
        key = lead.indicator or lead.why
        first = merged.get(key)
        if first is None:
            merged[key] = lead
        elif lead.scope != "alert" and lead.why not in first.why:
            merged[key] = replace(
                first,
                why=f"{first.why}, and {lead.why}",
                clears_if_benign=first.clears_if_benign and lead.clears_if_benign,
                priority=min(first.priority, lead.priority),
            )
    return list(merged.values())


def _describe_lookup(call: Call) -> str:
    return _describe_indicator(call.input.get("kind"), call.input.get("value"))


def _describe_indicator(kind: Any, value: Any) -> str:
    value = str(value or "")
    if kind == "hash":
        return f"sha256 {value[:12]}..." if len(value) > 16 else f"hash {value}"
    return f"{kind} {value}"


def _basename(image: Any) -> str:
    return str(image or "").replace("/", "\\").rsplit("\\", 1)[-1]


def _from_staging_dir(image: Any) -> bool:
    lowered = str(image or "").lower().replace("/", "\\")
    return any(folder in lowered for folder in STAGING_DIRS)


def _hash(value: Any) -> str | None:
    value = str(value or "").lower()
    return value if SHA256.match(value) else None


def _domain(value: Any) -> str | None:
    value = str(value or "").lower().rstrip(".")
    return value if DOMAIN.match(value) else None


def _ip(value: Any) -> str | None:
    try:
        return str(ipaddress.ip_address(str(value)))
    except ValueError:
        return None


def _is_public(ip: str | None) -> bool:
    return bool(ip) and ipaddress.ip_address(ip).is_global


def _token(value: Any) -> str:
    """A short backend value (country, role, tag) fit to repeat; anything else shows as '?'."""
    return value if isinstance(value, str) and SAFE_TOKEN.match(value) else "?"


def _count(n: int, noun: str, plural: str | None = None) -> str:
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def clip(text: str, limit: int) -> str:
    text = " ".join(text.split()).replace("<", "(").replace(">", ")")  # nothing that could close a block
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:24]


@dataclass(frozen=True)
class Turn:
    """What the model says next: reasoning text, then the tool calls it asks for together (tool, input)."""

    text: str
    calls: tuple[tuple[str, dict], ...] = ()

    @property
    def stop_reason(self) -> str:
        return "tool_use" if self.calls else "end_turn"


# ======================================================================================
# The playbook
# ======================================================================================
@dataclass(frozen=True)
class Step:
    """One call the playbook wants made. The `subject` arguments identify it among the calls made."""

    tool: str
    args: dict
    topic: str  # as in "I could not confirm <topic>"
    intent: str  # said just before calling it
    subject: tuple[str, ...] = ()

    def matches(self, call: Call) -> bool:
        return call.name == self.tool and all(call.input.get(key) == self.args.get(key) for key in self.subject)

    def narrower(self) -> dict:
        """The arguments for the one retry: a shorter window where there is one."""
        if "lookback_hours" in self.args:
            return dict(self.args, lookback_hours=min(RETRY_LOOKBACK_HOURS, self.args["lookback_hours"]))
        return self.args


@dataclass
class Assessment:
    verdict: str = "inconclusive"
    confirmed: list[tuple[Lead, Call]] = field(default_factory=list)  # intel rates the indicator malicious
    cleared: list[tuple[Lead, Call]] = field(default_factory=list)  # intel rates it benign
    unconfirmed: list[tuple[Lead, Call | None]] = field(default_factory=list)  # no lookup, or no verdict either way
    failed: list[tuple[Step, Call]] = field(default_factory=list)  # checks that ended in an error
    passed: list[tuple[Step, Call]] = field(default_factory=list)  # checks that answered

    def confirmed_in(self, scope: str) -> list[tuple[Lead, Call]]:
        return [(lead, lookup) for lead, lookup in self.confirmed if lead.scope == scope]


class Playbook:
    """Decides the next turn from the conversation alone.

    The order: the user's sign-ins and account; the host's facts, processes and connections;
    the security events; intel on what looked suspicious; when intel confirms it, the finding
    recorded in a knowledge graph if an admin offers one (graph_tool), containment and a ticket;
    the verdict. A step whose tool is not offered is skipped. A retryable failure
    is retried once over a narrower window. A failure is never a finding: it can only make the
    verdict less certain.
    """

    def __init__(self, conversation: Conversation):
        self.conversation = conversation
        self.alert = conversation.alert

    def next_turn(self) -> Turn:
        if self.alert is None:
            summary = "No alert was given (expected <alert>{...}</alert> in the first message)."
            return Turn("I cannot find an alert to investigate.\n\n" + verdict_block("inconclusive", summary, []))
        if self.conversation.budget_exhausted:
            return self._final(self.assess(), budget_exhausted=True)
        # The reads need nothing of each other: asked for together, as are the lookups of the leads they
        # found (only once every read answered). A write is asked for alone: each waits for its analyst.
        for steps in (self.read_steps, self.lookup_steps):
            if asked := [call for step in steps() if (call := self._advance(step))]:
                return self._ask(asked)
        assessment = self.assess()
        if assessment.verdict == "malicious":
            for step in self.containment_steps(assessment):
                if not self._attempts(step):  # a write is asked for once; whatever comes back is final
                    return self._ask([step])
        return self._final(assessment)

    # -- the steps --------------------------------------------------------------------------
    def read_steps(self) -> list[Step]:
        user, host = self.alert.user, self.alert.host
        window = {"lookback_hours": LOOKBACK_HOURS, "limit": RESULT_LIMIT}
        steps = []
        if user:
            steps += [
                Step(
                    "search_logins",
                    {"user": user, **window},
                    "the login history",
                    f"I'll check {user}'s sign-ins over the last {LOOKBACK_HOURS} hours.",
                    ("user", "host"),
                ),
                Step(
                    "get_user",
                    {"username": user},
                    f"{user}'s account details",
                    f"I'll look at {user}'s account.",
                    ("username",),
                ),
            ]
        if host:
            steps += [
                Step(
                    "get_host",
                    {"host": host},
                    f"the facts about {host}",
                    f"I'll look up the facts about {host}.",
                    ("host",),
                ),
                Step(
                    "get_process_tree",
                    {"host": host, **window},
                    "the process tree",
                    f"I'll list the processes started on {host}.",
                    ("host",),
                ),
                Step(
                    "get_network_connections",
                    {"host": host, **window},
                    "the network connections",
                    f"I'll list {host}'s outbound connections.",
                    ("host",),
                ),
            ]
        if user or host:
            subject = {key: value for key, value in (("host", host), ("user", user)) if value}
            steps.append(
                Step(
                    "search_events",
                    {**subject, **window},
                    "the security events",
                    f"I'll search the security events for {' and '.join(subject.values())}.",
                    ("host", "user", "kind"),
                )
            )
        return [step for step in steps if step.tool in self.conversation.offered]

    def lookup_steps(self) -> list[Step]:
        """Intel on the strongest leads first, at most MAX_LOOKUPS of them."""
        if "lookup_indicator" not in self.conversation.offered:
            return []
        leads = [lead for lead in sorted(self.leads(), key=lambda lead: lead.priority) if lead.indicator]
        steps = []
        for lead in leads[:MAX_LOOKUPS]:
            kind, value = lead.indicator
            described = _describe_indicator(kind, value)
            steps.append(
                Step(
                    "lookup_indicator",
                    {"kind": kind, "value": value},
                    f"the reputation of {described}",
                    f"I'll ask intel about {described} ({lead.why}).",
                    ("kind", "value"),
                )
            )
        return steps

    def containment_steps(self, assessment: Assessment) -> list[Step]:
        """The record in a knowledge graph an admin offers, isolation for a compromised host, disabling
        for stolen credentials, then the ticket."""
        alert, steps = self.alert, []
        host_facts, user_facts = self._data("get_host"), self._data("get_user")
        on_host, on_account = assessment.confirmed_in("host"), assessment.confirmed_in("account")
        if record := self._graph_step(assessment):
            steps.append(record)
        if alert.host and on_host and not host_facts.get("isolated"):
            steps.append(
                Step(
                    "isolate_host",
                    {"host": alert.host, "reason": self._reason(on_host)},
                    f"the isolation of {alert.host}",
                    f"That is compromise on {alert.host}, so I am asking to isolate it; an analyst has to approve.",
                    ("host",),
                )
            )
        if alert.user and on_account and not user_facts.get("disabled"):
            steps.append(
                Step(
                    "disable_account",
                    {"username": alert.user, "reason": self._reason(on_account)},
                    f"disabling {alert.user}",
                    f"{alert.user}'s password is in an attacker's hands, so I am asking to disable the account; "
                    "an analyst has to approve.",
                    ("username",),
                )
            )
        steps = [step for step in steps if step.tool in self.conversation.offered]
        critical = (
            bool(on_host and on_account)
            or host_facts.get("criticality") == "critical"
            or host_facts.get("role") == "domain_controller"
        )
        ticket = {
            "title": clip(
                f"Malicious activity on {alert.host or alert.user or 'an alerted asset'} ({alert.name})", 200
            ),
            "body": self._ticket_body(assessment, steps),
            "severity": "critical" if critical else "high",
        }
        steps.append(
            Step("open_ticket", ticket, "the incident ticket", "I'll open the incident ticket with the findings.")
        )
        return [step for step in steps if step.tool in self.conversation.offered]

    def _graph_step(self, assessment: Assessment) -> Step | None:
        """What is confirmed, recorded in the offered knowledge graph: an entity for the alert's host
        (its findings and the alert's own) and one for its user (the account's), each observation
        written by the playbook from the evidence, none copied from the alert's text. First among the
        writes: it records what is known whatever the analysts decide on containment. The admin's
        classification, not the model, decides whether it waits for an approval."""
        graph, alert = self.conversation.graph, self.alert
        if graph is None:
            return None
        named_by_alert = assessment.confirmed_in("alert")  # on the host when the alert names one
        on_host = assessment.confirmed_in("host") + (named_by_alert if alert.host else [])
        on_account = assessment.confirmed_in("account") + ([] if alert.host else named_by_alert)
        entities = [
            {
                "name": subject,
                "entityType": kind,
                "observations": [f"{alert.name}: malicious, confirmed by intel"]
                + [clip(_confirmed_text(lead, lookup), GRAPH_OBSERVATION_LIMIT) for lead, lookup in confirmed],
            }
            for subject, kind, confirmed in ((alert.host, "host", on_host), (alert.user, "account", on_account))
            if subject and confirmed
        ]
        if not entities:
            return None
        server = graph.partition("__")[0]
        named = " and ".join(entity["name"] for entity in entities)
        return Step(
            graph,
            {"entities": entities},
            "the knowledge-graph record",
            f"I'll record the confirmed findings on {named} in the {server} knowledge graph.",
        )

    def leads(self) -> list[Lead]:
        processes = self._outcome(self._step("get_process_tree"))
        found = []
        for step in self.read_steps():
            outcome = self._outcome(step)
            if outcome is not None and outcome.ok:
                found += analyse(outcome, self.alert, processes).leads
        return merge_leads(found + alert_leads(self.alert))

    def assess(self) -> Assessment:
        """The verdict the evidence so far supports: malicious only on intel, benign only on a full set of answers."""
        assessment = Assessment()
        for step in self.read_steps() + self.lookup_steps():
            if (outcome := self._outcome(step)) is not None:
                (assessment.passed if outcome.ok else assessment.failed).append((step, outcome))
        lookups = {
            (call.input.get("kind"), call.input.get("value")): call
            for _, call in assessment.passed
            if call.name == "lookup_indicator"
        }
        for lead in self.leads():
            lookup = lookups.get(lead.indicator)
            verdict = _verdict_of(lookup) if lookup else None
            if verdict == "malicious":
                assessment.confirmed.append((lead, lookup))
            elif verdict == "benign" and lead.clears_if_benign:
                assessment.cleared.append((lead, lookup))
            else:
                assessment.unconfirmed.append((lead, lookup))
        if assessment.confirmed:
            assessment.verdict = "malicious"
        elif assessment.failed or assessment.unconfirmed or not assessment.passed:
            assessment.verdict = "inconclusive"
        else:
            assessment.verdict = "benign"
        return assessment

    # -- state, read from the calls made so far ---------------------------------------------
    def _attempts(self, step: Step) -> list[Call]:
        return [call for call in self.conversation.calls if step.matches(call)]

    def _outcome(self, step: Step | None) -> Call | None:
        attempts = self._attempts(step) if step else []
        return attempts[-1] if attempts else None

    def _step(self, tool: str) -> Step | None:
        return next((step for step in self.read_steps() if step.tool == tool), None)

    def _data(self, tool: str) -> dict:
        outcome = self._outcome(self._step(tool))
        return outcome.data if outcome is not None and isinstance(outcome.data, dict) else {}

    def _advance(self, step: Step) -> Step | None:
        """The call this step still needs (its retry, once), or None once it has its answer."""
        attempts = self._attempts(step)
        if not attempts:
            return step
        if len(attempts) == 1 and attempts[0].retryable:
            narrower = step.narrower()
            window = f" over {narrower['lookback_hours']} hours" if narrower != step.args else ""
            return replace(step, args=narrower, intent=f"I'll retry {step.topic} once{window}.")
        return None

    # -- what the model says ----------------------------------------------------------------
    def _ask(self, steps: list[Step]) -> Turn:
        together = (
            [f"These {len(steps)} checks need nothing of each other, so I'll make them at once."]
            if len(steps) > 1
            else []
        )
        said = " ".join([self._opening(), *together, *(step.intent for step in steps)])
        return Turn(said, tuple((step.tool, step.args) for step in steps))

    def _opening(self) -> str:
        """A comment on what just came back, or on the alert before anything was called."""
        if not self.conversation.calls:
            alert = self.alert
            subjects = [f"host {alert.host}"] * bool(alert.host) + [f"user {alert.user}"] * bool(alert.user)
            severity = f" (severity {alert.severity})" if alert.severity else ""
            return (
                f"{_sentence(alert.name)}{severity} involves {' and '.join(subjects) or 'no host or user I can query'}."
            )
        return " ".join(self._comment(call) for call in self.conversation.latest) or "Continuing the investigation."

    def _is_write(self, call: Call) -> bool:
        return call.name in WRITE_TOOLS or call.name == self.conversation.graph

    def _comment(self, call: Call) -> str:
        if self._is_write(call):
            return _write_outcome(call)
        step = next((step for step in self.read_steps() + self.lookup_steps() if step.matches(call)), None)
        if call.ok:
            return analyse(call, self.alert, self._outcome(self._step("get_process_tree"))).text
        topic = step.topic if step else f"the result of {call.name}"
        again = " on the retry either" if step and len(self._attempts(step)) > 1 else ""
        return f"I could not confirm {topic} ({call.reason}){again}; an error is not a negative finding."

    def _final(self, assessment: Assessment, *, budget_exhausted: bool = False) -> Turn:
        if budget_exhausted:
            verdict, summary, evidence = self._stopped(assessment)
        else:
            conclude = {"malicious": self._malicious, "benign": self._benign, "inconclusive": self._inconclusive}
            verdict, summary, evidence = conclude[assessment.verdict](assessment)
        summary = clip(summary, 1500)
        return Turn(
            f"{self._opening()}\n\nVerdict: {verdict}. {summary}\n\n" + verdict_block(verdict, summary, evidence)
        )

    # Each conclusion: (verdict, summary, evidence); an evidence string starts with its tool_use id.
    def _malicious(self, assessment: Assessment) -> tuple[str, str, list[str]]:
        writes = [call for call in self.conversation.calls if self._is_write(call)]
        summary = (
            "Confirmed: " + "; ".join(_confirmed_text(lead, lookup) for lead, lookup in assessment.confirmed) + "."
        )
        summary = " ".join([summary, *(_write_outcome(call) for call in writes), *_unchecked(assessment)])
        evidence = _evidence(assessment) + [f"{call.id}: {_write_outcome(call)}" for call in writes]
        return "malicious", summary, evidence

    def _benign(self, assessment: Assessment) -> tuple[str, str, list[str]]:
        checked = [step.topic for step, call in assessment.passed if call.name != "lookup_indicator"]
        summary = f"Every check succeeded and nothing suspicious was found ({', '.join(checked)})."
        if assessment.cleared:
            cleared = ", ".join(_describe_lookup(lookup) for _, lookup in assessment.cleared)
            summary += f" Intel rates {cleared} benign."
        evidence = [
            f"{call.id}: {_describe_lookup(call)} is {_verdict_of(call)}"
            if call.name == "lookup_indicator"
            else f"{call.id}: {step.topic} checked"
            for step, call in assessment.passed
        ]
        return "benign", summary, evidence

    def _inconclusive(self, assessment: Assessment) -> tuple[str, str, list[str]]:
        parts = _unchecked(assessment)
        if assessment.failed:
            parts.append(
                "An error is not a negative finding: the evidence is incomplete, so I cannot call this benign."
            )
        if assessment.unconfirmed:
            parts.append(
                "Suspicious but not confirmed by intel: "
                + "; ".join(lead.why for lead, _ in assessment.unconfirmed)
                + "."
            )
        if not assessment.passed:
            parts.append("No check for this alert could be completed, so there is no evidence either way.")
        return "inconclusive", " ".join(parts), _evidence(assessment)

    def _stopped(self, assessment: Assessment) -> tuple[str, str, list[str]]:
        """The budget ran out: stop now, and say what was established so far."""
        summary = "The investigation budget is exhausted, so I stop here with the evidence incomplete."
        if assessment.confirmed:
            summary += (
                " Found so far: "
                + "; ".join(_confirmed_text(lead, lookup) for lead, lookup in assessment.confirmed)
                + "."
            )
        return "inconclusive", " ".join([summary, *_unchecked(assessment)]), _evidence(assessment)

    def _reason(self, confirmed: list[tuple[Lead, Call]]) -> str:
        """Why a containment is asked for, citing the evidence, for the analyst who approves it."""
        cited = " ".join(dict.fromkeys(id_ for lead, lookup in confirmed for id_ in (lead.evidence, lookup.id) if id_))
        findings = "; ".join(_confirmed_text(lead, lookup) for lead, lookup in confirmed)
        return clip(f"{self.alert.name} (evidence {cited}): {findings}", 500)

    def _ticket_body(self, assessment: Assessment, containment: list[Step]) -> str:
        alert = self.alert
        about = [f"severity {alert.severity}"] * bool(alert.severity) + [f"host {alert.host}"] * bool(alert.host)
        about += [f"user {alert.user}"] * bool(alert.user)
        lines = [
            f"{_sentence(alert.name)}" + (f" ({', '.join(about)})" if about else "") + ".",
            f"Verdict of the {OFFLINE_MODEL_NAME}: malicious.",
            "",
            "Confirmed by intel:",
        ]
        lines += [f"- {_confirmed_text(lead, lookup)} (evidence {lookup.id})" for lead, lookup in assessment.confirmed]
        if assessment.unconfirmed:
            lines += ["", "Suspicious, not confirmed:"] + [f"- {lead.why}" for lead, _ in assessment.unconfirmed]
        if assessment.failed:
            lines += ["", "Could not be checked:"] + [
                f"- {step.topic} ({call.reason})" for step, call in assessment.failed
            ]
        lines += ["", "Containment:"]
        for step in containment:
            outcome = self._outcome(step)
            lines.append(f"- {_write_outcome(outcome)}" if outcome else f"- {step.topic}: not requested")
        if not containment:
            lines.append("- none requested")
        text = "\n".join(lines).replace("<", "(").replace(">", ")")
        return text if len(text) <= 5000 else text[:4997] + "..."


def _unchecked(assessment: Assessment) -> list[str]:
    return [f"I could not confirm {step.topic} ({call.reason})." for step, call in assessment.failed]


def _evidence(assessment: Assessment) -> list[str]:
    evidence = [f"{lookup.id}: {_confirmed_text(lead, lookup)}" for lead, lookup in assessment.confirmed]
    evidence += [f"{call.id}: {step.topic} not confirmed ({call.reason})" for step, call in assessment.failed]
    for lead, lookup in assessment.unconfirmed:
        source = lookup.id if lookup else lead.evidence or "alert"
        rated = f" (intel: {_verdict_of(lookup)})" if lookup else ""
        evidence.append(f"{source}: unconfirmed: {lead.why}{rated}")
    return evidence


def _confirmed_text(lead: Lead, lookup: Call) -> str:
    return f"{lead.why}; intel rates {_describe_lookup(lookup)} {_verdict_of(lookup)}"


WRITE_TOOLS = {"isolate_host", "release_host", "disable_account", "enable_account", "open_ticket", "add_comment"}
WRITE_NAMES = {
    "isolate_host": "the isolation of {host}",
    "release_host": "the release of {host}",
    "disable_account": "disabling {username}",
    "enable_account": "re-enabling {username}",
    "open_ticket": "the incident ticket",
    "add_comment": "the ticket comment",
}
# Where an approval's typed error may carry the analyst's words; the guidance is the fallback.
ANALYST_REASON_KEYS = ("analyst_reason", "rejection_reason", "decision_reason", "comment", "note", "guidance")


def _write_outcome(call: Call) -> str:
    """What became of a requested write, in a sentence or two. A write is never retried."""
    host, username = _token(call.input.get("host")), _token(call.input.get("username"))
    graph = call.name.partition("__")[2] == GRAPH_ACTION  # only graph_tool's is ever called among external tools
    name = "the knowledge-graph record" if graph else WRITE_NAMES.get(call.name, call.name)
    name = name.format(host=host, username=username)
    if call.ok:
        data = call.data if isinstance(call.data, dict) else {}
        if graph:
            return f"The findings {'were already' if data.get('replayed') else 'are now'} in the knowledge graph."
        if call.name == "isolate_host":
            already = data.get("already_isolated") or data.get("replayed")  # replayed: done before for this alert
            return f"{host} {'was already' if already else 'is now'} isolated."
        if call.name == "disable_account":
            return f"{username} {'was already' if data.get('already') or data.get('replayed') else 'is now'} disabled."
        if call.name == "open_ticket":
            return f"Ticket #{_token(data.get('ticket_id'))} is open."
        return f"{_sentence(name)} succeeded."
    if call.reason == "rejected_by_analyst":
        result = call.result or {}
        words = next(
            (result[key] for key in ANALYST_REASON_KEYS if isinstance(result.get(key), str) and result[key].strip()),
            "no reason given",
        )
        return f"The analyst rejected {name}: {clip(words, 200).rstrip('.')}. I will not retry it."
    if call.reason == "expired":
        return f"The request for {name} expired before anyone decided. I will not retry it."
    if call.reason == "approval_pending":
        return f"{_sentence(name)} is still waiting for an analyst's approval."
    if call.reason == "cancelled":
        return f"The request for {name} was cancelled. I will not retry it."
    return f"The request for {name} failed ({call.reason}), so it has not happened. I will not retry it."
