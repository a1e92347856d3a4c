"""Per-call metadata the gateway sends in a request's _meta (never in the arguments), and the one
the server sends back. Its own module: the gateway and the supervisor need these names, not the
MCP server library that toolserver.servers imports."""

META_CORRELATION = "gatehouse/correlation_id"
META_TRIGGER = "gatehouse/trigger"
META_IDEMPOTENCY_KEY = "gatehouse/idempotency_key"
META_BACKEND_STATUS = "gatehouse/backend_status"
# Set on a write: do not act, say whether it already happened ({"check": "done"|"not_done"|"unknown"}).
META_CHECK_DONE = "gatehouse/check_done"
# Sent back by the bridge of an HTTP server (toolserver.bridge): what that server asked of us (one of
# SERVER_REQUESTS) and was refused since its last answer.
META_REFUSED = "gatehouse/refused"
SERVER_REQUESTS = ("sampling", "elicitation", "roots")
