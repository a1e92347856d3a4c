#!/usr/bin/env bash
# Run a command while a CPU burner keeps every core busy: tests that wait on readiness, with bounds,
# must still pass on a loaded machine (a CI host running other jobs). The burners run at the
# command's own priority, so they take their share of the cores; they stop when the command ends.
#   scripts/under_load.sh <command...>
set -euo pipefail
burners=()
stop_burners() { kill "${burners[@]}" 2>/dev/null || true; }
trap stop_burners EXIT
for _ in $(seq "$(nproc)"); do
  python3 -c 'while True: pass' &
  burners+=($!)
done
echo "under load: ${#burners[@]} CPU burners ($(nproc) cores)" >&2
"$@"
