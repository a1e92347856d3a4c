"""Backends behind the tool servers (architecture rule 1 keeps each in its own process).

- base.py: the contract: one interface per capability, the failures an adapter raises, the
  parameters it may declare (Param); shapes.py: what each method returns.
- http.py: HttpBackend, the generic HTTP client (egress guard, status -> failure mapping).
- registry.py: register(server, name), which refuses a class that breaks the contract at import,
  and adapter_class() / adapter_names(), which callers use to find one.
- lab.py: the lab's adapters, the first implementation.
- ldap.py: the identity server over LDAP (OpenLDAP with ppolicy, Active Directory).
- taxii.py: threat intel from a TAXII 2.1 collection of STIX 2.1 indicators.
- misp.py: threat intel from a MISP instance (its attribute search).
- splunk.py, elastic.py: the SIEM over Splunk's REST API (oneshot searches) and Elasticsearch (_search, ECS).
- crowdstrike.py: host containment (edr-response) through the CrowdStrike Falcon API.
- jira.py: tickets and comments (ticketing) as Jira Cloud issues.

A new backend (a Splunk SIEM, say) is one module here: its classes, each decorated with
@register("siem", "splunk"), and its adapter names in MODULES below.

The modules are imported when an adapter is first looked up, not with this package: a tool
server process imports only its own adapter's module (taxii's stix2 and ldap's ldap3 would cost
every server a large part of its start-up), and the console none until a page asks for one.
"""

import importlib

from toolserver.adapters import registry
from toolserver.adapters.registry import register

# Which module registers each built-in adapter name (for every server it serves).
MODULES = {
    "lab": "lab",
    "ldap": "ldap",
    "active-directory": "ldap",
    "taxii": "taxii",
    "splunk": "splunk",
    "elastic": "elastic",
    "misp": "misp",
    "crowdstrike": "crowdstrike",
    "jira": "jira",
}


def _load(*names: str) -> None:
    for module in sorted({MODULES[name] for name in names if name in MODULES}):
        importlib.import_module(f"toolserver.adapters.{module}")  # registers its adapters


def adapter_class(server: str, name: str):
    """The class of adapter `name` for `server`, or None; imports only that adapter's module."""
    _load(name)
    return registry.adapter_class(server, name)


def adapter_names(server: str) -> list[str]:
    _load(*MODULES)
    return registry.adapter_names(server)


def registered():
    """Every (server, adapter name, class), the built-in ones all loaded."""
    _load(*MODULES)
    return registry.registered()


__all__ = ["MODULES", "adapter_class", "adapter_names", "register", "registered"]
