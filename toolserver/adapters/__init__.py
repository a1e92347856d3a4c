"""Backends behind the tool servers. One interface per capability (base.py); the lab is the
first implementation (lab.py). A Splunk, CrowdStrike, Okta, Jira or MISP adapter is one new
class implementing the same interface, registered in ADAPTERS."""

from toolserver.adapters import lab
from toolserver.adapters.base import (
    EdrBackend,
    EdrResponseBackend,
    IdentityBackend,
    IntelBackend,
    SiemBackend,
    TicketingBackend,
)

# server name -> adapter name -> class
ADAPTERS: dict[str, dict[str, type]] = {
    "siem": {"lab": lab.LabSiem},
    "edr": {"lab": lab.LabEdr},
    "edr-response": {"lab": lab.LabEdrResponse},
    "identity": {"lab": lab.LabIdentity},
    "ticketing": {"lab": lab.LabTicketing},
    "intel": {"lab": lab.LabIntel},
}

INTERFACES: dict[str, type] = {
    "siem": SiemBackend,
    "edr": EdrBackend,
    "edr-response": EdrResponseBackend,
    "identity": IdentityBackend,
    "ticketing": TicketingBackend,
    "intel": IntelBackend,
}
