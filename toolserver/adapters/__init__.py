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
@register("siem", "splunk"), and one import line below so that it registers.
"""

# Each import registers that module's adapters.
from toolserver.adapters import crowdstrike, elastic, jira, lab, ldap, misp, splunk, taxii  # noqa: F401
from toolserver.adapters.registry import adapter_class, adapter_names, register, registered

__all__ = ["adapter_class", "adapter_names", "register", "registered"]
