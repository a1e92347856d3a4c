"""A real OpenLDAP slapd for the LDAP adapter's tests: the tests' own process on a loopback port.

Debian's slapd package (scripts/slapd.sh installs it; `make test` runs that) started from a
slapd.conf written here: the mdb backend in a temporary folder, the ppolicy overlay with
ppolicy_use_lockout and a default policy whose pwdLockout is TRUE (so pwdAccountLockedTime stops
binds), the core/cosine/inetorgperson/nis schemas and a small test schema carrying Active
Directory's user attributes under their AD OIDs (sAMAccountName, userAccountControl,
accountExpires, adminCount, lastLogonTimestamp, with integer matching as AD has). OpenLDAP 2.5
builds the ppolicy schema into its module (`moduleload ppolicy`).

The service account (cn=gatehouse,ou=services) may read people and write only the two
attributes that disable an account; users' passwords are readable by nobody. Ready once an
anonymous search of the root DSE answers (a bounded wait); stopped with its process group.
"""

import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ldap3 import BASE, NONE, Connection, Server
from ldap3.core.exceptions import LDAPException

from tests.support import WAIT_S, free_port, listening, stop_process, wait_until

SLAPD = "/usr/sbin/slapd"
SCHEMAS = Path("/etc/ldap/schema")
MODULES = Path("/usr/lib/ldap")
SUFFIX = "dc=example,dc=org"
ROOT_DN, ROOT_PASSWORD = f"cn=admin,{SUFFIX}", "root-only-in-tests"
SERVICE_DN = f"cn=gatehouse,ou=services,{SUFFIX}"
PEOPLE = f"ou=people,{SUFFIX}"
AD_PEOPLE = f"ou=ad-users,{SUFFIX}"
POLICY_DN = f"cn=default,ou=policies,{SUFFIX}"

AD_SCHEMA = """\
# Active Directory's user attributes, under AD's own OIDs, as AD matches them (integers by value).
attributetype ( 1.2.840.113556.1.4.221 NAME 'sAMAccountName'
    EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( 1.2.840.113556.1.4.8 NAME 'userAccountControl'
    EQUALITY integerMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
attributetype ( 1.2.840.113556.1.4.159 NAME 'accountExpires'
    EQUALITY integerMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
attributetype ( 1.2.840.113556.1.4.150 NAME 'adminCount'
    EQUALITY integerMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
attributetype ( 1.2.840.113556.1.4.1696 NAME 'lastLogonTimestamp'
    EQUALITY integerMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
attributetype ( 1.2.840.113556.1.2.141 NAME 'department'
    EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
objectclass ( 1.2.840.113556.1.5.9 NAME 'user' SUP organizationalPerson STRUCTURAL
    MUST sAMAccountName
    MAY ( userAccountControl $ accountExpires $ adminCount $ lastLogonTimestamp $ department $
          displayName $ mail $ userPassword ) )
"""


@dataclass(frozen=True)
class Person:
    uid: str
    password: str
    display_name: str
    mail: str
    department: str
    title: str


PEOPLE_LOADED = [
    Person("j.doe", "jdoe-password-1", "Jane Doe", "j.doe@example.org", "Finance", "Accountant"),
    Person("m.smith", "msmith-password-2", "Mark Smith", "m.smith@example.org", "IT", "Administrator"),
]
# AD's documented values: NORMAL_ACCOUNT (0x200) | DONT_EXPIRE_PASSWORD (0x10000) = 66048; an
# accountExpires of 2030-01-01 (FILETIME); a lastLogonTimestamp of 2024-05-01T12:00:00Z.
AD_CONTROL = 66048
AD_EXPIRES = "135379296000000000"
AD_LAST_LOGON = "133590384000000000"


def _config(folder: Path, size_limit: int | None = None) -> str:
    data = folder / "data"
    data.mkdir()
    (folder / "ad-test.schema").write_text(AD_SCHEMA)
    schemas = "\n".join(f"include {SCHEMAS / name}.schema" for name in ("core", "cosine", "inetorgperson", "nis"))
    return f"""\
{schemas}
include {folder / "ad-test.schema"}
pidfile {folder / "slapd.pid"}
modulepath {MODULES}
moduleload back_mdb
moduleload ppolicy

database mdb
maxsize 16777216
suffix "{SUFFIX}"
rootdn "{ROOT_DN}"
rootpw {ROOT_PASSWORD}
directory {data}
{f'limits dn.exact="{SERVICE_DN}" size={size_limit}' if size_limit else ""}

overlay ppolicy
ppolicy_default "{POLICY_DN}"
ppolicy_use_lockout

access to dn.base="" by * read
access to attrs=userPassword
    by self write
    by anonymous auth
    by * none
access to dn.subtree="{SUFFIX}" attrs=pwdAccountLockedTime,userAccountControl
    by dn.exact="{SERVICE_DN}" write
    by users read
access to *
    by users read
    by * none
"""


class Slapd:
    def __init__(self, folder: Path, *, size_limit: int | None = None):
        """`size_limit`: the most entries a search by the service account returns (slapd's `limits`)."""
        self.folder = folder
        self.port = free_port()
        self.url = f"ldap://127.0.0.1:{self.port}"
        self.service_password = "gatehouse-bind-" + os.urandom(8).hex()
        conf = folder / "slapd.conf"
        conf.write_text(_config(folder, size_limit))
        self.process = subprocess.Popen(
            [SLAPD, "-h", f"{self.url}/", "-f", str(conf), "-d", "0"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group, stopped whole
        )
        try:
            wait_until(self._ready, timeout=10, interval=0.02, what=f"slapd on port {self.port}")
            self._load()
        except BaseException:
            self.stop()
            raise

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"slapd exited: {self.process.stderr.read().decode()[-2000:]}")
        if not listening(self.port):
            return False
        try:
            connection = Connection(Server(self.url, get_info=NONE, connect_timeout=1), receive_timeout=1)
            if not connection.bind():
                return False
            found = connection.search("", "(objectClass=*)", BASE)
            connection.unbind()
            return found
        except LDAPException:
            return False

    def root(self) -> Connection:
        connection = Connection(Server(self.url, get_info=NONE), ROOT_DN, ROOT_PASSWORD, receive_timeout=5)
        assert connection.bind(), connection.result
        return connection

    def _load(self) -> None:
        conn = self.root()
        entries = [
            (SUFFIX, ["dcObject", "organization"], {"dc": "example", "o": "Example"}),
            *[
                (f"ou={ou},{SUFFIX}", ["organizationalUnit"], {"ou": ou})
                for ou in ("people", "ad-users", "services", "policies")
            ],
            (
                POLICY_DN,
                ["organizationalRole", "pwdPolicy"],
                {"cn": "default", "pwdAttribute": "userPassword", "pwdLockout": "TRUE", "pwdMaxFailure": "0"},
            ),
            (
                SERVICE_DN,
                ["organizationalRole", "simpleSecurityObject"],
                {"cn": "gatehouse", "userPassword": self.service_password},
            ),
        ]
        for person in PEOPLE_LOADED:
            _first, _, last = person.display_name.partition(" ")
            entries.append(
                (
                    f"uid={person.uid},{PEOPLE}",
                    ["inetOrgPerson"],
                    {
                        "uid": person.uid,
                        "cn": person.display_name,
                        "sn": last,
                        "displayName": person.display_name,
                        "mail": person.mail,
                        "departmentNumber": person.department,
                        "title": person.title,
                        "userPassword": person.password,
                    },
                )
            )
            entries.append(
                (
                    f"cn={person.display_name},{AD_PEOPLE}",
                    ["user"],
                    {
                        "cn": person.display_name,
                        "sn": last,
                        "sAMAccountName": person.uid,
                        "displayName": person.display_name,
                        "mail": person.mail,
                        "department": person.department,
                        "title": person.title,
                        "userAccountControl": str(AD_CONTROL),
                        "accountExpires": AD_EXPIRES,
                        "lastLogonTimestamp": AD_LAST_LOGON,
                        "adminCount": "1" if person.department == "IT" else "0",
                        "userPassword": person.password,
                    },
                )
            )
        for dn, classes, attributes in entries:
            assert conn.add(dn, classes, attributes), (dn, conn.result)
        conn.unbind()

    def bind_as(self, uid: str, password: str) -> tuple[bool, int]:
        """A user's own bind: (succeeded, LDAP result code)."""
        connection = Connection(Server(self.url, get_info=NONE), f"uid={uid},{PEOPLE}", password, receive_timeout=5)
        bound = connection.bind()
        code = connection.result["result"]
        connection.unbind()
        return bound, code

    def read(self, dn: str, *attributes: str) -> dict[str, list[str]]:
        """An entry's attributes as the root sees them (operational ones named in `attributes`)."""
        conn = self.root()
        assert conn.search(dn, "(objectClass=*)", BASE, attributes=list(attributes)), conn.result
        raw = conn.response[0]["raw_attributes"]
        conn.unbind()
        return {name: [value.decode() for value in values] for name, values in raw.items()}

    def pause(self) -> None:
        """Stopped, every thread of it, when this returns: kill() only sends the signal, and on a busy machine
        a thread of slapd could still answer the next request before the stop reached it."""
        os.killpg(self.process.pid, signal.SIGSTOP)
        wait_until(lambda: _all_threads_stopped(self.process.pid), timeout=WAIT_S, what="slapd stopped")

    def resume(self) -> None:
        os.killpg(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        stop_process(self.process, group=True)
        if self.process.stderr:
            self.process.stderr.close()

    def params(self, *, active_directory: bool = False) -> dict[str, str]:
        """The adapter's parameters for this directory."""
        return {"base_dn": AD_PEOPLE if active_directory else PEOPLE, "bind_dn": SERVICE_DN}


def _all_threads_stopped(pid: int) -> bool:
    states = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/stat") as stat:
                states.append(stat.read().rsplit(")", 1)[1].split()[0])
        except FileNotFoundError:  # a thread that ended meanwhile
            continue
    return bool(states) and all(state in ("T", "t") for state in states)
