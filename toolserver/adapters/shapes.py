"""The shapes adapters return: what a tool's `data` holds, whichever backend answered.

An adapter validates the backend's answer into one of these (shaped(), page_of() in
adapters.base) and returns the shape's dump: unknown keys are dropped, so what reaches the
model is always our shape, never a backend's raw payload (architecture rule 4). An answer that
does not fit is BackendError(MALFORMED). Every string in a shape is cut to MAX_STRING characters
(shaped()), so one field of a backend's answer cannot fill the model's context. Each interface method in adapters.base names the shape
it returns (`@returns`); the contract test (tests/toolserver/test_adapter_contract.py) holds
every registered adapter to it.
"""

from typing import Literal

from pydantic import BaseModel, ConfigDict

MAX_STRING = 1000  # characters of one string field, or of one string in a list field


class Shape(BaseModel):
    model_config = ConfigDict(extra="ignore")


# siem
class Login(Shape):
    at: str
    user: str
    host: str
    source_ip: str
    source_country: str
    result: Literal["success", "failure"]
    method: str


class SiemEvent(Shape):
    """One security event from the SIEM (not an investigation's Event, which is the console's)."""

    at: str
    kind: str
    host: str | None
    user: str | None
    summary: str


# edr
class Host(Shape):
    host_id: str
    hostname: str
    os: str
    role: str
    owner: str | None
    ip: str
    criticality: str
    isolated: bool
    last_seen: str | None


class Process(Shape):
    at: str
    pid: int
    ppid: int
    image: str
    command_line: str
    user: str | None
    sha256: str | None


class Connection(Shape):
    at: str
    pid: int
    image: str
    remote_ip: str
    remote_domain: str | None
    remote_port: int
    bytes_out: int


# edr-response
class Isolation(Shape):
    host_id: str
    isolated: bool
    action_id: str
    already_isolated: bool = False
    already_released: bool = False


# identity
class User(Shape):
    username: str
    display_name: str
    email: str
    department: str
    title: str
    privileged: bool
    disabled: bool
    mfa: bool
    last_login: str | None


class AccountChange(Shape):
    username: str
    disabled: bool
    already: bool
    action_id: str


# ticketing
class Ticket(Shape):
    ticket_id: str
    url: str


class Comment(Shape):
    ticket_id: str
    comment_id: str


# intel
class Indicator(Shape):
    kind: str
    value: str
    verdict: Literal["malicious", "suspicious", "benign", "unknown"]
    confidence: int
    tags: list[str]
    first_seen: str | None
    source: str
