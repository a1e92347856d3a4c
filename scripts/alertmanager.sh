#!/usr/bin/env bash
# The Alertmanager test (tests/investigations/test_alertmanager_live.py) runs Debian's
# prometheus-alertmanager and its amtool; the package's service is never started.
set -euo pipefail
if [ -x /usr/bin/prometheus-alertmanager ] && [ -x /usr/bin/amtool ]; then exit 0; fi
echo "alertmanager: installing Debian's prometheus-alertmanager package"
apt-get update -qq
apt-get install -y -qq --no-install-recommends prometheus-alertmanager >/dev/null
