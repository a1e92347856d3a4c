#!/usr/bin/env bash
# The LDAP tests start their own OpenLDAP slapd (tests/toolserver/slapd.py) from Debian's slapd
# package. Installed unconfigured: no system directory is created and no service is started.
set -euo pipefail
if [ -x /usr/sbin/slapd ]; then exit 0; fi
echo "slapd: installing Debian's slapd package (unconfigured)"
echo "slapd slapd/no_configuration boolean true" | debconf-set-selections
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slapd >/dev/null
