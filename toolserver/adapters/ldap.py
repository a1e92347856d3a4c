"""The identity server over LDAP: OpenLDAP (ppolicy) and Active Directory, with ldap3.

The backend URL is `ldap://host[:389]` or `ldaps://host[:636]`; the credential is the bind
password of the service account named by the `bind_dn` parameter. Every operation opens its own
connection, in a worker thread (ldap3 is synchronous):

  resolve the URL's host -> egress.check() (GATEHOUSE_BACKEND_ALLOWED_HOSTS, architecture rule 10)
  -> connect to the address that was checked -> StartTLS when asked (the certificate is verified
  for the URL's host name) -> bind as `bind_dn` -> one search or modify -> unbind.

Referrals are never followed: one would carry the bind password to a host nobody checked.

Users are found by `user_attribute` (uid on OpenLDAP, sAMAccountName on AD) under `base_dn`, the
name escaped as a filter value (RFC 4515: ldap3.utils.conv.escape_filter_chars), so a name is only
ever compared, never read as filter syntax. Exactly one entry must match: none is TargetNotFound,
more than one is BackendRefused (the adapter never guesses which account to disable), and so is a
search the directory cut short (sizeLimitExceeded), however many entries it returned.

Disabling:
  OpenLDAP          pwdAccountLockedTime set to 000001010000Z, a permanent lock (slapo-ppolicy(5);
                    the policy must have pwdLockout TRUE for it to stop binds); enable deletes it.
  Active Directory  the ACCOUNTDISABLE bit (0x2) of userAccountControl set or cleared, every other
                    bit kept, by a read-modify-write that deletes the value read and adds the new
                    one in one modify, so a change made meanwhile fails it instead of being lost;
                    accountExpires is never touched.
An account already in the asked state is answered `already: true` without a write, and
already_done() reads the same attribute, so a write is never sent twice (architecture rule 6).

Failures: server unreachable or gone -> BackendError(UNAVAILABLE); no answer within timeout_s ->
TIMEOUT; the service bind refused or access denied -> FORBIDDEN. No message carries the password.
This module runs in the server process without Django.
"""

import asyncio
import contextlib
import math
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from ldap3 import MODIFY_ADD, MODIFY_DELETE, MODIFY_REPLACE, NONE, SIMPLE, SUBTREE, Connection, Server, Tls
from ldap3.core.exceptions import LDAPException, LDAPInvalidDnError, LDAPResponseTimeoutError
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import parse_dn

from toolserver import egress, schemas
from toolserver.adapters.base import (
    BackendError,
    BackendRefused,
    CannotTell,
    IdentityBackend,
    Param,
    TargetNotFound,
    WriteContext,
    shaped,
)
from toolserver.adapters.registry import register
from toolserver.adapters.shapes import AccountChange, User
from toolserver.envelope import BackendFailure

PERMANENT_LOCK = "000001010000Z"  # slapo-ppolicy(5): locked until an administrator unlocks it
ACCOUNTDISABLE = 0x2  # userAccountControl's "the account is disabled" bit (MS-ADTS 2.2.16)

# LDAP result codes (RFC 4511 4.1.9) and what they mean for a caller.
SUCCESS, TIME_LIMIT, SIZE_LIMIT, NO_SUCH_ATTRIBUTE = 0, 3, 4, 16
FORBIDDEN_CODES = {8, 13, 48, 49, 50}  # strongerAuthRequired, confidentialityRequired, inappropriateAuthentication,
# invalidCredentials, insufficientAccessRights
REFUSED_CODES = {17, 19, 21, 65, 69}  # undefinedAttributeType, constraintViolation, invalidAttributeSyntax,
# objectClassViolation, objectClassModsProhibited: this directory cannot take the change as asked

_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def _parses_as_dn(value: str) -> None:
    try:
        parse_dn(value)
    except LDAPInvalidDnError:
        raise ValueError("This is not a distinguished name (e.g. ou=people,dc=example,dc=org).") from None


def _absolute_path(value: str) -> None:
    if not value.startswith("/"):
        raise ValueError("The CA file must be an absolute path on the server's host.")


@dataclass(frozen=True)
class Found:
    """One directory entry: its DN and the attributes read, as text (first value each)."""

    dn: str
    attributes: dict[str, str]

    def get(self, name: str) -> str:
        return self.attributes.get(name.lower(), "")


class LdapBackend(IdentityBackend):
    """What OpenLDAP and Active Directory share: the connection, the search, the failure mapping."""

    default_user_attribute = "uid"
    vendor = "ldap"
    status_kind = "LDAP result code"  # a BackendError's status is the directory's, not HTTP's
    url_schemes = {"ldaps": 636, "ldap": 389}
    person_filter = "(|(objectClass=person)(objectClass=posixAccount))"
    state_attribute = ""  # the attribute that says whether the account is disabled
    extra_attributes: tuple[str, ...] = ()

    params = (
        Param(
            "base_dn",
            "Base DN",
            required=True,
            validator=_parses_as_dn,
            help="Where users are searched, e.g. ou=people,dc=example,dc=org.",
        ),
        Param(
            "bind_dn",
            "Bind DN",
            required=True,
            validator=_parses_as_dn,
            help="The service account's DN; its password is the credential.",
        ),
        Param(
            "user_attribute",
            "User name attribute",
            pattern=r"[A-Za-z][A-Za-z0-9-]{0,63}",
            help="an attribute name, e.g. uid or sAMAccountName",
        ),
        Param("start_tls", "StartTLS", pattern=r"(?i)true|false|yes|no|on|off|1|0", help="true or false"),
        Param(
            "ca_file",
            "CA file",
            validator=_absolute_path,
            help="The CA certificate (PEM) that signed the directory's certificate.",
        ),
    )

    def __init__(self, *, url: str, credential: str, timeout_s: float, params=None):
        super().__init__(url=url, credential=credential, timeout_s=timeout_s, params=params)
        parts = urlsplit(self.url)
        self._tls_only = parts.scheme == "ldaps"
        if parts.scheme not in self.url_schemes or not parts.hostname:
            self._host, self._port = "", 0  # every call fails UNAVAILABLE: the check names no value
        else:
            self._host, self._port = parts.hostname, parts.port or self.url_schemes[parts.scheme]
        self._start_tls = self.param("start_tls").lower() in _TRUE
        self._egress = egress.from_environ()
        self.user_attribute = self.param("user_attribute") or self.default_user_attribute

    # -- the interface ------------------------------------------------------------------------------
    async def health(self) -> str:
        who = await self._run(lambda conn: conn.extend.standard.who_am_i() or "")
        return f"bound as {who.removeprefix('dn:') or self.param('bind_dn')}"

    async def get_user(self, args: schemas.GetUser) -> dict:
        return shaped(User, self.user_of(await self._run(lambda conn: self._find(conn, args.username))))

    async def disable_account(self, args: schemas.AccountAction, write: WriteContext) -> dict:
        return shaped(AccountChange, await self._run(lambda conn: self._set_disabled(conn, args.username, True)))

    async def enable_account(self, args: schemas.AccountAction, write: WriteContext) -> dict:
        return shaped(AccountChange, await self._run(lambda conn: self._set_disabled(conn, args.username, False)))

    async def already_done(self, tool: str, args, write: WriteContext) -> dict | None:
        if tool not in ("disable_account", "enable_account"):
            raise CannotTell(tool)
        found = await self._run(lambda conn: self._find(conn, args.username))
        disabled = tool == "disable_account"
        if self.is_disabled(found) != disabled:
            return None
        return {"username": args.username, "disabled": disabled, "already": True, "action_id": "", "found_done": True}

    # -- what each directory says differently -------------------------------------------------------
    def is_disabled(self, found: Found) -> bool:
        raise NotImplementedError

    def change(self, found: Found, disable: bool) -> dict:
        """The modify that puts `found` in the asked state (it is not in it yet)."""
        raise NotImplementedError

    def user_of(self, found: Found) -> dict:
        raise NotImplementedError

    # -- one operation on its own connection ----------------------------------------------------------
    async def _run(self, operation: Callable[[Connection], object]):
        return await asyncio.to_thread(self._session, operation)

    def _session(self, operation: Callable[[Connection], object]):
        connection = self._connect()
        try:
            return operation(connection)
        except LDAPException as exc:
            raise _failure_of(exc) from None
        finally:
            with contextlib.suppress(LDAPException):  # closing a connection that already broke
                connection.unbind()

    def _connect(self) -> Connection:
        """A bound connection to an address that passed the allow-list. Raises EgressRefused or a failure."""
        if not self._host:
            raise BackendError(BackendFailure.UNAVAILABLE)
        try:
            infos = socket.getaddrinfo(self._host, self._port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            raise BackendError(BackendFailure.UNAVAILABLE) from None
        addresses = [str(info[4][0]) for info in infos]
        egress.check(self._egress, self._host, self._port, addresses)
        try:
            server = Server(
                addresses[0],
                port=self._port,
                use_ssl=self._tls_only,
                tls=self._tls(),
                get_info=NONE,
                connect_timeout=self.timeout_s,
            )
            connection = Connection(
                server,
                user=self.param("bind_dn"),
                password=self._credential,
                authentication=SIMPLE,
                receive_timeout=max(1, math.ceil(self.timeout_s)),  # ldap3 packs it as an integer on Linux
                auto_referrals=False,  # a referral would take the bind password to an unchecked host
                raise_exceptions=False,
                read_only=False,
            )
            connection.open()
            if self._start_tls and not self._tls_only and not connection.start_tls():
                raise BackendError(BackendFailure.UNAVAILABLE)
            if not connection.bind():
                code = connection.result.get("result") if connection.result else None
                connection.unbind()
                raise BackendError(_failure_of_code(code), status=code)
        except LDAPException as exc:
            raise _failure_of(exc) from None
        return connection

    def _tls(self) -> Tls | None:
        if not (self._tls_only or self._start_tls):
            return None
        # Connected to an address, the certificate is still checked for the URL's host name (and sent as SNI).
        return Tls(
            validate=ssl.CERT_REQUIRED,
            ca_certs_file=self.param("ca_file") or None,
            valid_names=[self._host],
            sni=self._host,
        )

    def _find(self, conn: Connection, username: str) -> Found:
        """The one entry whose user attribute equals `username` (escaped: compared, never parsed)."""
        query = f"(&{self.person_filter}({self.user_attribute}={escape_filter_chars(username)}))"
        attributes = [self.user_attribute, *self.extra_attributes]
        conn.search(
            self.param("base_dn"),
            query,
            SUBTREE,
            attributes=attributes,
            size_limit=2,
            time_limit=int(self.timeout_s) or 1,
        )
        code = conn.result.get("result")
        entries = [entry for entry in conn.response or [] if entry.get("type") == "searchResEntry"]
        if code not in (SUCCESS, SIZE_LIMIT):
            raise BackendError(_failure_of_code(code), status=code)
        # sizeLimitExceeded: more matched than came back (a directory's own limit may return just one).
        if len(entries) > 1 or code == SIZE_LIMIT:
            raise BackendRefused(
                f"more than one directory entry has {self.user_attribute} {username!r}; none was changed"
            )
        if not entries:
            raise TargetNotFound(username)
        entry = entries[0]
        raw = entry.get("raw_attributes") or {}
        return Found(
            dn=entry["dn"],
            attributes={name.lower(): values[0].decode("utf-8", "replace") for name, values in raw.items() if values},
        )

    def _set_disabled(self, conn: Connection, username: str, disable: bool) -> dict:
        for _attempt in range(3):  # a concurrent change to the same attribute: read again, once or twice
            found = self._find(conn, username)
            name = found.get(self.user_attribute) or username
            if self.is_disabled(found) == disable:
                return {"username": name, "disabled": disable, "already": True, "action_id": ""}
            conn.modify(found.dn, self.change(found, disable))
            code = conn.result.get("result")
            if code == SUCCESS:
                return {"username": name, "disabled": disable, "already": False, "action_id": ""}
            if code != NO_SUCH_ATTRIBUTE:  # 16: the value read is gone, someone changed it meanwhile
                raise _refused_or_failed(code, conn.result.get("description", ""))
        raise BackendError(BackendFailure.UNAVAILABLE)


def _failure_of_code(code) -> BackendFailure:
    if code in FORBIDDEN_CODES:
        return BackendFailure.FORBIDDEN
    if code == TIME_LIMIT:
        return BackendFailure.TIMEOUT
    return BackendFailure.UNAVAILABLE  # busy, unavailable, unwillingToPerform, a referral, no base entry, ...


def _refused_or_failed(code, description: str) -> Exception:
    if code in REFUSED_CODES:
        return BackendRefused(f"the directory refused the change ({description or code})")
    return BackendError(_failure_of_code(code), status=code)


def _failure_of(exc: LDAPException) -> BackendError:
    """A transport or protocol failure of ldap3 as ours; its text (which may quote a request) is dropped."""
    if isinstance(exc, TimeoutError | LDAPResponseTimeoutError):
        return BackendError(BackendFailure.TIMEOUT)
    return BackendError(BackendFailure.UNAVAILABLE)


@register("identity", "ldap")
class LdapIdentity(LdapBackend):
    """OpenLDAP with the ppolicy overlay: a disabled account is permanently locked."""

    source = "ldap:identity"
    state_attribute = "pwdAccountLockedTime"
    extra_attributes = (
        "cn",
        "displayName",
        "mail",
        "departmentNumber",
        "ou",
        "title",
        "pwdAccountLockedTime",
        "pwdLastSuccess",
    )

    def is_disabled(self, found: Found) -> bool:
        return found.get("pwdAccountLockedTime") == PERMANENT_LOCK

    def change(self, found: Found, disable: bool) -> dict:
        if disable:  # replace: a temporary lock (failed binds) becomes the permanent one
            return {"pwdAccountLockedTime": [(MODIFY_REPLACE, [PERMANENT_LOCK])]}
        return {"pwdAccountLockedTime": [(MODIFY_DELETE, [])]}

    def user_of(self, found: Found) -> dict:
        return {
            "username": found.get(self.user_attribute),
            "display_name": found.get("displayName") or found.get("cn"),
            "email": found.get("mail"),
            "department": found.get("departmentNumber") or found.get("ou"),
            "title": found.get("title"),
            "privileged": False,  # the directory does not say; the model is told only what it holds
            "disabled": self.is_disabled(found),
            "mfa": False,
            "last_login": _generalized_time(found.get("pwdLastSuccess")),
        }


@register("identity", "active-directory")
class ActiveDirectoryIdentity(LdapBackend):
    """Active Directory: a disabled account has userAccountControl's ACCOUNTDISABLE bit set."""

    source = "active-directory:identity"
    default_user_attribute = "sAMAccountName"
    person_filter = "(objectClass=user)"
    state_attribute = "userAccountControl"
    extra_attributes = (
        "cn",
        "displayName",
        "mail",
        "department",
        "title",
        "userAccountControl",
        "adminCount",
        "lastLogonTimestamp",
    )

    def is_disabled(self, found: Found) -> bool:
        return bool(_control(found) & ACCOUNTDISABLE)

    def change(self, found: Found, disable: bool) -> dict:
        return account_control_change(_control(found), disable)

    def user_of(self, found: Found) -> dict:
        return {
            "username": found.get(self.user_attribute),
            "display_name": found.get("displayName") or found.get("cn"),
            "email": found.get("mail"),
            "department": found.get("department"),
            "title": found.get("title"),
            "privileged": found.get("adminCount") == "1",  # protected by AdminSDHolder: a member of an admin group
            "disabled": self.is_disabled(found),
            "mfa": False,
            "last_login": _filetime(found.get("lastLogonTimestamp")),
        }


def _control(found: Found) -> int:
    try:
        return int(found.get("userAccountControl"))
    except ValueError:
        raise BackendError(BackendFailure.MALFORMED) from None


def account_control_change(current: int, disable: bool) -> dict:
    """The modify that sets (or clears) ACCOUNTDISABLE in `current`, every other bit kept.

    The value read is deleted and the new one added in the same modify: if the attribute changed
    since it was read, the delete fails (noSuchAttribute) and nothing is written.
    """
    wanted = current | ACCOUNTDISABLE if disable else current & ~ACCOUNTDISABLE
    return {"userAccountControl": [(MODIFY_DELETE, [str(current)]), (MODIFY_ADD, [str(wanted)])]}


def _generalized_time(value: str) -> str | None:
    """An LDAP GeneralizedTime (20240501120000Z) as ISO 8601, or None."""
    try:
        return datetime.strptime(value[:14], "%Y%m%d%H%M%S").replace(tzinfo=UTC).isoformat()
    except ValueError:
        return None


def _filetime(value: str) -> str | None:
    """An AD FILETIME (100 ns since 1601-01-01 UTC; 0 or unset: never) as ISO 8601, or None."""
    try:
        ticks = int(value)
    except ValueError:
        return None
    if ticks <= 0:
        return None
    return (datetime(1601, 1, 1, tzinfo=UTC) + timedelta(microseconds=ticks // 10)).isoformat()
