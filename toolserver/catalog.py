"""Every tool server and tool Gatehouse has: one table, read by the servers, the gateway and the pages.

A server is one capability, run as its own process with its own credential (architecture rule 1).
A write tool is privileged: it derives an idempotency key from its action, its target and its
trigger (rule 6), and it waits for approval when its policy says so (rule 9).
"""

from dataclasses import dataclass, field

from toolserver import schemas


@dataclass(frozen=True)
class ToolSpec:
    name: str
    arguments: type[schemas.StrictArgs]
    description: str
    write: bool = False
    # A write that changes or removes state (isolating a host, disabling an account), not one that
    # only adds (a ticket, a comment): MCP's destructiveHint, which a client may ask a person about.
    destructive: bool = False
    # The fields naming what a write acts on; with the action and the trigger they make the key.
    target_fields: tuple[str, ...] = ()
    # Free text that may differ between two requests for the same action without a conflict.
    free_text: tuple[str, ...] = ()
    # Fields stored in the audit record only as a keyed hash.
    sensitive: tuple[str, ...] = ()
    # The write this one reverses (same target fields): once this succeeds, that one's result for the
    # same target and alert no longer holds, so asking for it again sends it rather than replaying it.
    undoes: str = ""

    def input_schema(self) -> dict:
        """The schema its server advertises (additionalProperties false) and the model is first offered."""
        return self.arguments.model_json_schema()


@dataclass(frozen=True)
class ServerSpec:
    name: str
    backend: str  # what the server talks to: names the errors ("siem_timeout") and the faults
    description: str
    tools: tuple[ToolSpec, ...] = field(default_factory=tuple)

    def tool(self, name: str) -> ToolSpec | None:
        return next((tool for tool in self.tools if tool.name == name), None)


READ_GUIDANCE = " Results are capped; `truncated` says when more exist. Timestamps are ISO-8601 UTC."

SERVERS: dict[str, ServerSpec] = {
    spec.name: spec
    for spec in [
        ServerSpec(
            "siem",
            "siem",
            "Search the SIEM: sign-ins and security events.",
            (
                ToolSpec(
                    "search_logins",
                    schemas.SearchLogins,
                    "Sign-in attempts (success and failure) for a user and/or host, newest first, with "
                    "source IP and country. Use it to check for impossible travel, password spraying or "
                    "a login from an attacker's IP. A good first query: the alert's user, 24 hours." + READ_GUIDANCE,
                    sensitive=("user",),
                ),
                ToolSpec(
                    "search_events",
                    schemas.SearchEvents,
                    "Security events (email clicks, antivirus alerts, DNS queries, VPN logins, process "
                    "starts) for a host and/or user, newest first. Filter by kind to stay under the cap."
                    + READ_GUIDANCE,
                    sensitive=("user",),
                ),
            ),
        ),
        ServerSpec(
            "edr",
            "edr",
            "Read endpoint telemetry: host facts, processes and network connections.",
            (
                ToolSpec(
                    "get_host",
                    schemas.GetHost,
                    "Facts about one host: role (workstation, server, domain controller), owner, IP, "
                    "criticality and whether it is already isolated. Check this before proposing isolation.",
                ),
                ToolSpec(
                    "get_process_tree",
                    schemas.HostActivity,
                    "Processes started on a host, newest first, with parent, command line, user and "
                    "sha256. Look for office apps spawning shells and encoded PowerShell." + READ_GUIDANCE,
                ),
                ToolSpec(
                    "get_network_connections",
                    schemas.HostActivity,
                    "Outbound connections from a host, newest first, with the process, remote IP, domain, "
                    "port and bytes sent. Regular intervals to one destination suggest beaconing." + READ_GUIDANCE,
                ),
            ),
        ),
        ServerSpec(
            "edr-response",
            "edr",
            "Contain hosts. Privileged: every call waits for an analyst's approval.",
            (
                ToolSpec(
                    "isolate_host",
                    schemas.HostAction,
                    "Cut a host off the network (it keeps talking to the EDR only). Ask for it only when "
                    "the evidence shows compromise; say why, citing the evidence. An analyst approves it "
                    "first; repeating it for the same alert returns the first result.",
                    write=True,
                    undoes="release_host",
                    destructive=True,
                    target_fields=("host",),
                    free_text=("reason",),
                ),
                ToolSpec(
                    "release_host",
                    schemas.HostAction,
                    "Reconnect an isolated host. Needs an analyst's approval.",
                    write=True,
                    undoes="isolate_host",
                    destructive=True,
                    target_fields=("host",),
                    free_text=("reason",),
                ),
            ),
        ),
        ServerSpec(
            "identity",
            "identity",
            "Read and manage user accounts. Disabling or enabling an account is privileged.",
            (
                ToolSpec(
                    "get_user",
                    schemas.GetUser,
                    "Facts about one account: department, title, whether it is privileged, disabled, "
                    "enrolled in MFA, and its last sign-in.",
                    sensitive=("username",),
                ),
                ToolSpec(
                    "disable_account",
                    schemas.AccountAction,
                    "Disable an account and end its sessions. Ask for it only when the evidence shows the "
                    "account is compromised; say why. An analyst approves it first.",
                    write=True,
                    undoes="enable_account",
                    destructive=True,
                    target_fields=("username",),
                    free_text=("reason",),
                    sensitive=("username",),
                ),
                ToolSpec(
                    "enable_account",
                    schemas.AccountAction,
                    "Re-enable a disabled account. Needs an analyst's approval.",
                    write=True,
                    undoes="disable_account",
                    destructive=True,
                    target_fields=("username",),
                    free_text=("reason",),
                    sensitive=("username",),
                ),
            ),
        ),
        ServerSpec(
            "ticketing",
            "ticketing",
            "Open and update incident tickets.",
            (
                ToolSpec(
                    "open_ticket",
                    schemas.OpenTicket,
                    "Open the incident ticket for this alert (one per alert: asking again returns the "
                    "first ticket). Summarise the findings and cite the evidence.",
                    write=True,
                    free_text=("body",),
                ),
                ToolSpec(
                    "add_comment",
                    schemas.AddComment,
                    "Add a comment to an existing ticket.",
                    write=True,
                    target_fields=("ticket_id", "body"),
                ),
            ),
        ),
        ServerSpec(
            "intel",
            "intel",
            "Threat intelligence lookups.",
            (
                ToolSpec(
                    "lookup_indicator",
                    schemas.LookupIndicator,
                    "Reputation of a file hash, IP address or domain: verdict (malicious, suspicious, "
                    "benign, unknown), confidence and tags. 'unknown' means no intelligence, not benign.",
                ),
            ),
        ),
    ]
}


def find_tool(tool_name: str) -> tuple[ServerSpec, ToolSpec] | None:
    for server in SERVERS.values():
        tool = server.tool(tool_name)
        if tool is not None:
            return server, tool
    return None
