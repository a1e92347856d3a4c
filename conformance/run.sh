#!/bin/sh
# The official MCP conformance suite against one running tool server ($1: its Streamable HTTP URL):
# every scenario that applies to a server declaring only tools, side by side, then each one's output.
# The suite's other scenarios test the reference "everything" server's fixtures (a tool named
# test_simple_text, test prompts and resources, logging, completion, sampling, elicitation), which
# a server that does not declare them has not got. No expected-failures baseline: any failure exits 1.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
suite="$here/node_modules/@modelcontextprotocol/conformance/dist/index.js"
scenarios=${CONFORMANCE_SCENARIOS:-"server-initialize ping tools-list server-sse-multiple-streams dns-rebinding-protection"}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
pids=""
for scenario in $scenarios; do
  (cd "$out" && node --import "$here/node20.mjs" "$suite" server --url "$1" --scenario "$scenario" >"$scenario.log" 2>&1 \
    && echo ok >"$scenario.rc" || echo failed >"$scenario.rc") &
  pids="$pids $!"
done
wait $pids
status=0
for scenario in $scenarios; do
  cat "$out/$scenario.log"
  [ "$(cat "$out/$scenario.rc")" = ok ] || { echo "conformance: $scenario failed" >&2; status=1; }
done
exit $status
