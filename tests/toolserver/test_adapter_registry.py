"""Registration refuses, at import, an adapter that breaks its interface's contract, naming the
class and what is missing; and it needs no Django (the server process loads none)."""

import importlib
import subprocess
import sys
import textwrap

import pytest

from toolserver.adapters import adapter_class, adapter_names, registered
from toolserver.adapters.base import IntelBackend, Param, SiemBackend
from toolserver.adapters.registry import INTERFACES, Registry
from toolserver.catalog import SERVERS

pytestmark = pytest.mark.any_mode  # its tests that use no database run once, in the embedded run


class HalfSiem(SiemBackend):
    source = "half:siem"

    async def health(self):
        return "ok"

    async def search_logins(self, args): ...


def test_a_class_missing_a_method_is_refused_at_import_naming_the_class_and_the_method(tmp_path, monkeypatch):
    (tmp_path / "vendor_siem.py").write_text(
        textwrap.dedent("""
        from toolserver.adapters import register
        from toolserver.adapters.base import SiemBackend

        @register("siem", "vendor")
        class VendorSiem(SiemBackend):
            source = "vendor:siem"

            async def health(self):
                return "ok"

            async def search_logins(self, args): ...
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(TypeError) as refused:
        importlib.import_module("vendor_siem")
    assert (
        str(refused.value)
        == "adapter vendor_siem.VendorSiem cannot serve 'siem': it does not implement search_events of SiemBackend"
    )
    assert adapter_class("siem", "vendor") is None  # nothing half-registered
    sys.modules.pop("vendor_siem", None)


@pytest.mark.parametrize(
    "body, problem",
    [
        (
            "class Bad(IntelBackend):\n source = 'x:intel'\n async def health(self): ...",
            "it does not implement lookup_indicator of IntelBackend",
        ),
        (
            "class Bad(IntelBackend):\n source = 'x:intel'\n async def health(self): ...\n def lookup_indicator(self, args): ...",
            "lookup_indicator is not async",
        ),
        (
            "class Bad(IntelBackend):\n source = 'x:intel'\n async def health(self): ...\n async def lookup_indicator(self): ...",
            "lookup_indicator takes (), not (args)",
        ),
        (
            "class Bad(IntelBackend):\n async def health(self): ...\n async def lookup_indicator(self, args): ...",
            "it has no `source` (e.g. 'lab:siem'), which every envelope names",
        ),
        ("class Bad(SiemBackend):\n source = 'x:siem'", "it does not subclass IntelBackend"),
        (
            "class Bad(Ok):\n params = (Param('Org Id', 'Org'),)",
            "parameter name 'Org Id' is not lower-case letters, digits and _ (at most 40)",
        ),
        (
            "class Bad(Ok):\n params = (Param('org', 'Org'), Param('org', 'Org again'))",
            "parameter 'org' is declared twice",
        ),
        (
            "class Bad(Ok):\n params = (Param('org', 'Org', pattern='[a-'),)",
            "parameter 'org' has a pattern that does not compile",
        ),
        ("class Bad(Ok):\n params = ('org',)", "its `params` is not a tuple of Param"),
    ],
    ids=["missing", "sync", "signature", "source", "interface", "param-name", "param-twice", "param-pattern", "params"],
)
def test_each_breach_of_the_contract_is_refused_and_named(body, problem):
    class Ok(IntelBackend):
        source = "ok:intel"

        async def health(self): ...

        async def lookup_indicator(self, args): ...

    scope = {"__name__": "vendor", "IntelBackend": IntelBackend, "SiemBackend": SiemBackend, "Param": Param, "Ok": Ok}
    exec(body, scope)  # noqa: S102 - the test's own adapter module, written above
    with pytest.raises(TypeError) as refused:
        Registry().register("intel", "bad")(scope["Bad"])
    assert str(refused.value) == f"adapter vendor.Bad cannot serve 'intel': {problem}"


def test_a_name_is_taken_once_per_server_and_the_server_must_exist():
    registry = Registry()
    registry.register("siem", "vendor")(type("Siem", (HalfSiem,), {"search_events": HalfSiem.search_logins}))
    with pytest.raises(TypeError, match="'siem' already has an adapter 'vendor'"):
        registry.register("siem", "vendor")(type("Other", (HalfSiem,), {"search_events": HalfSiem.search_logins}))
    with pytest.raises(TypeError, match="there is no tool server 'splunk'"):
        registry.register("splunk", "vendor")(HalfSiem)


def test_every_server_has_an_interface_and_the_lab_adapter():
    assert set(INTERFACES) == set(SERVERS)
    built_in = {server: ["lab"] for server in SERVERS} | {
        "intel": ["lab", "misp", "taxii"],  # toolserver/adapters/misp.py, taxii.py
        "identity": ["active-directory", "lab", "ldap"],  # toolserver/adapters/ldap.py
        "siem": ["elastic", "lab", "splunk"],  # toolserver/adapters/splunk.py, elastic.py
        "edr-response": ["crowdstrike", "lab"],  # toolserver/adapters/crowdstrike.py
        "ticketing": ["jira", "lab"],  # toolserver/adapters/jira.py
    }
    assert {server: adapter_names(server) for server in SERVERS} == built_in
    assert len(registered()) == sum(map(len, built_in.values()))


def test_the_adapters_and_the_server_entry_point_import_without_django():
    code = (
        "import sys, toolserver.adapters, toolserver.launch, toolserver.servers.__main__; "
        "assert not [m for m in sys.modules if m == 'django' or m.startswith('django.')], 'django imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("adapter", "params", "loaded", "not_loaded"),
    [
        ("lab", "{}", "toolserver.adapters.lab", ("stix2", "ldap3", "toolserver.adapters.taxii")),
        ("taxii", '{"collection_id": "indicators"}', "stix2", ("ldap3", "toolserver.adapters.lab")),
        ("misp", "{}", "toolserver.adapters.misp", ("stix2", "toolserver.adapters.taxii")),  # indicators.py: no STIX
    ],
)
def test_a_server_process_imports_only_its_own_adapters_module(adapter, params, loaded, not_loaded):
    """Start-up: a tool server pays for its own adapter's libraries, not every vendor's."""
    code = (
        "import sys; from toolserver.servers.__main__ import backend_from; "
        f"backend_from({{'GATEHOUSE_SERVER': 'intel', 'GATEHOUSE_ADAPTER': {adapter!r}, "
        f"'GATEHOUSE_BACKEND_URL': 'http://127.0.0.1:9/', 'GATEHOUSE_BACKEND_PARAMS': {params!r}}}); "
        "print(' '.join(sorted(m for m in sys.modules if '.' not in m or m.startswith('toolserver.adapters.'))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    modules = done.stdout.split()
    assert loaded in modules
    assert not [name for name in not_loaded if name in modules]


def test_every_adapter_module_is_found_by_the_names_it_registers():
    """MODULES is how a lookup finds a module: an adapter missing from it would never load."""
    import pkgutil

    import toolserver.adapters
    from toolserver.adapters import MODULES

    for module in pkgutil.iter_modules(toolserver.adapters.__path__):
        importlib.import_module(f"toolserver.adapters.{module.name}")
    assert {(server, name, MODULES.get(name)) for server, name, cls in registered()} == {
        (server, name, cls.__module__.rsplit(".", 1)[1]) for server, name, cls in registered()
    }
