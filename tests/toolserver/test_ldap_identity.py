"""The identity adapters over LDAP (toolserver/adapters/ldap.py) against a real OpenLDAP slapd.

OpenLDAP's: a disable is a permanent ppolicy lock, so the user's own bind then fails with
invalidCredentials, and an enable lets it bind again. Active Directory's cannot run here: its
contract tests run on the same slapd with a test schema that carries AD's user attributes under
their AD OIDs (tests/toolserver/slapd.py), on AD's documented userAccountControl values.
"""

import asyncio
import socket

import pytest

from tests.toolserver.slapd import AD_CONTROL, AD_EXPIRES, AD_PEOPLE, PEOPLE, SERVICE_DN, Slapd
from toolserver import egress, schemas
from toolserver.adapters.base import BackendError, BackendRefused, ParamError, TargetNotFound, WriteContext
from toolserver.adapters.ldap import ACCOUNTDISABLE, ActiveDirectoryIdentity, LdapIdentity, account_control_change
from toolserver.envelope import BackendFailure

pytestmark = pytest.mark.any_mode  # its tests that use no database run once, in the embedded run

INVALID_CREDENTIALS = 49
WRITE = WriteContext(idempotency_key="ldap-test-key", trigger="ALERT-1", correlation_id="inv-ldap")
DOE, DOE_AD = f"uid=j.doe,{PEOPLE}", f"cn=Jane Doe,{AD_PEOPLE}"


def run(coroutine):
    return asyncio.run(coroutine)


@pytest.fixture
def allowed(slapd, monkeypatch):
    monkeypatch.setenv(egress.VARIABLE, f"127.0.0.1:{slapd.port}")


def adapter(slapd, cls=LdapIdentity, *, password=None, timeout_s=5.0, **params):
    given = slapd.params(active_directory=cls is ActiveDirectoryIdentity) | params
    return cls(url=slapd.url, credential=password or slapd.service_password, timeout_s=timeout_s, params=given)


def disable(backend, username="j.doe"):
    return run(backend.disable_account(schemas.AccountAction(username=username, reason="Phished: disable it."), WRITE))


def enable(backend, username="j.doe"):
    return run(backend.enable_account(schemas.AccountAction(username=username, reason="Cleared: enable it."), WRITE))


# -- OpenLDAP ---------------------------------------------------------------------------------------
def test_get_user_answers_the_user_shape_from_the_directory(slapd, allowed):
    assert run(adapter(slapd).get_user(schemas.GetUser(username="j.doe"))) == {
        "username": "j.doe",
        "display_name": "Jane Doe",
        "email": "j.doe@example.org",
        "department": "Finance",
        "title": "Accountant",
        "privileged": False,
        "disabled": False,
        "mfa": False,
        "last_login": None,
    }


def test_an_unknown_user_is_not_found(slapd, allowed):
    with pytest.raises(TargetNotFound):
        run(adapter(slapd).get_user(schemas.GetUser(username="nobody")))


def test_a_filter_injection_in_the_name_is_compared_as_a_name_and_finds_nobody(slapd, allowed):
    # The strict schema refuses such a name at the boundary; the adapter does not rely on it.
    for name in ("*)(uid=*", "*", "j.doe)(|(uid=*", "j.d*"):
        with pytest.raises(TargetNotFound):
            run(adapter(slapd).get_user(schemas.GetUser.model_construct(username=name)))


def test_disable_locks_the_account_so_its_own_bind_fails_and_enable_unlocks_it(slapd, allowed):
    assert slapd.bind_as("j.doe", "jdoe-password-1") == (True, 0)
    assert disable(adapter(slapd)) == {"username": "j.doe", "disabled": True, "already": False, "action_id": ""}
    assert slapd.read(DOE, "pwdAccountLockedTime")["pwdAccountLockedTime"] == ["000001010000Z"]
    assert slapd.bind_as("j.doe", "jdoe-password-1") == (False, INVALID_CREDENTIALS)
    assert run(adapter(slapd).get_user(schemas.GetUser(username="j.doe")))["disabled"] is True

    assert enable(adapter(slapd)) == {"username": "j.doe", "disabled": False, "already": False, "action_id": ""}
    assert slapd.read(DOE, "pwdAccountLockedTime").get("pwdAccountLockedTime", []) == []
    assert slapd.bind_as("j.doe", "jdoe-password-1") == (True, 0)
    assert slapd.bind_as("m.smith", "msmith-password-2") == (True, 0)  # nobody else was touched


def test_a_second_disable_answers_already_without_writing(slapd, allowed):
    disable(adapter(slapd))
    before = slapd.read(DOE, "entryCSN", "modifyTimestamp")
    assert disable(adapter(slapd)) == {"username": "j.doe", "disabled": True, "already": True, "action_id": ""}
    assert slapd.read(DOE, "entryCSN", "modifyTimestamp") == before  # no second modify
    assert enable(adapter(slapd))["already"] is False
    after = slapd.read(DOE, "entryCSN")
    assert enable(adapter(slapd))["already"] is True
    assert slapd.read(DOE, "entryCSN") == after


def test_a_temporary_lock_is_not_taken_for_disabled_and_a_disable_makes_it_permanent(slapd, allowed):
    root = slapd.root()
    assert root.modify(DOE, {"pwdAccountLockedTime": [("MODIFY_REPLACE", ["20240101000000Z"])]}), root.result
    root.unbind()
    assert run(adapter(slapd).get_user(schemas.GetUser(username="j.doe")))["disabled"] is False
    assert disable(adapter(slapd))["already"] is False
    assert slapd.read(DOE, "pwdAccountLockedTime")["pwdAccountLockedTime"] == ["000001010000Z"]


def test_already_done_reads_the_lock(slapd, allowed):
    backend = adapter(slapd)
    args = schemas.AccountAction(username="j.doe", reason="Phished: disable it.")
    assert run(backend.already_done("disable_account", args, WRITE)) is None
    assert run(backend.already_done("enable_account", args, WRITE))["found_done"] is True
    disable(backend)
    assert run(backend.already_done("disable_account", args, WRITE)) == {
        "username": "j.doe",
        "disabled": True,
        "already": True,
        "action_id": "",
        "found_done": True,
    }
    assert run(backend.already_done("enable_account", args, WRITE)) is None


def test_health_is_a_bind_and_a_wrong_password_is_forbidden(slapd, allowed):
    assert run(adapter(slapd).health()) == f"bound as {SERVICE_DN}"
    with pytest.raises(BackendError) as refused:
        run(adapter(slapd, password="not-the-password").health())
    assert (refused.value.failure, refused.value.status) == (BackendFailure.FORBIDDEN, INVALID_CREDENTIALS)
    assert "not-the-password" not in repr(refused.value) and "not-the-password" not in str(refused.value)


def test_an_account_without_the_write_right_is_forbidden_and_changes_nothing(slapd, allowed):
    # Bound as a plain user (who may read people, not lock them): the directory's ACL refuses.
    backend = adapter(slapd, password="jdoe-password-1", bind_dn=DOE)
    assert run(backend.get_user(schemas.GetUser(username="m.smith")))["username"] == "m.smith"
    with pytest.raises(BackendError) as refused:
        disable(backend, "m.smith")
    assert (refused.value.failure, refused.value.status) == (BackendFailure.FORBIDDEN, 50)  # insufficientAccessRights
    assert slapd.bind_as("m.smith", "msmith-password-2") == (True, 0)


def test_a_stopped_directory_is_unavailable_and_a_stalled_one_a_timeout(slapd, allowed):
    slapd.pause()  # it accepts connections (the kernel does) and answers nothing
    try:
        with pytest.raises(BackendError) as stalled:
            run(adapter(slapd, timeout_s=0.5).get_user(schemas.GetUser(username="j.doe")))
    finally:
        slapd.resume()
    assert stalled.value.failure == BackendFailure.TIMEOUT
    slapd.stop()
    with pytest.raises(BackendError) as stopped:
        run(adapter(slapd).get_user(schemas.GetUser(username="j.doe")))
    assert stopped.value.failure == BackendFailure.UNAVAILABLE


def test_a_host_not_on_the_allow_list_is_refused_before_any_connection(slapd, monkeypatch):
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    port = listener.getsockname()[1]
    monkeypatch.setenv(egress.VARIABLE, f"127.0.0.1:{slapd.port}")  # the directory, not this port
    backend = LdapIdentity(url=f"ldap://127.0.0.1:{port}", credential="secret", timeout_s=2, params=slapd.params())
    with pytest.raises(egress.EgressRefused):
        run(backend.health())
    with pytest.raises(BlockingIOError):
        listener.accept()  # nobody connected
    listener.close()
    monkeypatch.setenv(egress.VARIABLE, "localhost")  # a listed name vouches for public addresses only
    with pytest.raises(egress.EgressRefused):
        run(
            LdapIdentity(
                url=f"ldap://localhost:{slapd.port}", credential="x", timeout_s=2, params=slapd.params()
            ).health()
        )


def test_the_parameters_are_checked_naming_the_parameter_never_the_value(slapd):
    with pytest.raises(ParamError) as refused:
        LdapIdentity(
            url=slapd.url,
            credential="x",
            timeout_s=1,
            params={"base_dn": "people at example", "bind_dn": SERVICE_DN, "start_tls": "maybe"},
        )
    message = str(refused.value)
    assert "not a distinguished name" in message and "StartTLS is not in the expected form" in message
    assert "people at example" not in message
    with pytest.raises(ParamError, match="Bind DN is required"):
        LdapIdentity(url=slapd.url, credential="x", timeout_s=1, params={"base_dn": PEOPLE})


def test_a_name_shared_by_two_entries_is_refused_and_nothing_changes(slapd, allowed):
    root = slapd.root()
    assert root.add(
        f"uid=j.doe,ou=services,{PEOPLE.split(',', 1)[1]}",
        ["inetOrgPerson"],
        {"uid": "j.doe", "cn": "Other Doe", "sn": "Doe"},
    ), root.result
    root.unbind()
    with pytest.raises(BackendRefused, match="more than one"):
        disable(adapter(slapd, base_dn=PEOPLE.split(",", 1)[1]))
    assert slapd.read(DOE, "pwdAccountLockedTime").get("pwdAccountLockedTime", []) == []


def test_a_search_the_directory_cut_at_one_entry_is_refused_not_taken_as_the_account(tmp_path, monkeypatch):
    folder = tmp_path / "slapd"
    folder.mkdir()
    directory = Slapd(folder, size_limit=1)  # one entry and sizeLimitExceeded, as a directory's policy may answer
    try:
        monkeypatch.setenv(egress.VARIABLE, f"127.0.0.1:{directory.port}")
        root = directory.root()
        services = f"uid=j.doe,ou=services,{PEOPLE.split(',', 1)[1]}"
        assert root.add(services, ["inetOrgPerson"], {"uid": "j.doe", "cn": "Other Doe", "sn": "Doe"}), root.result
        root.unbind()
        with pytest.raises(BackendRefused, match="more than one"):
            disable(adapter(directory, base_dn=PEOPLE.split(",", 1)[1]))
        for dn in (DOE, services):
            assert directory.read(dn, "pwdAccountLockedTime").get("pwdAccountLockedTime", []) == []
    finally:
        directory.stop()


# -- Active Directory (contract tests on AD's documented attribute semantics) ------------------------
def test_contract_ad_get_user_reads_samaccountname_admincount_and_lastlogontimestamp(slapd, allowed):
    backend = adapter(slapd, ActiveDirectoryIdentity)
    assert run(backend.get_user(schemas.GetUser(username="m.smith"))) == {
        "username": "m.smith",
        "display_name": "Mark Smith",
        "email": "m.smith@example.org",
        "department": "IT",
        "title": "Administrator",
        "privileged": True,
        "disabled": False,
        "mfa": False,
        "last_login": "2024-05-01T12:00:00+00:00",
    }
    assert run(backend.get_user(schemas.GetUser(username="J.DOE")))["privileged"] is False  # AD names match case-blind


def test_contract_ad_disable_sets_only_accountdisable_and_leaves_accountexpires(slapd, allowed):
    backend = adapter(slapd, ActiveDirectoryIdentity)
    assert disable(backend) == {"username": "j.doe", "disabled": True, "already": False, "action_id": ""}
    entry = slapd.read(DOE_AD, "userAccountControl", "accountExpires")
    assert entry == {"userAccountControl": [str(AD_CONTROL | ACCOUNTDISABLE)], "accountExpires": [AD_EXPIRES]}
    assert AD_CONTROL | ACCOUNTDISABLE == 66050  # NORMAL_ACCOUNT | DONT_EXPIRE_PASSWORD | ACCOUNTDISABLE
    before = slapd.read(DOE_AD, "entryCSN")
    assert disable(backend)["already"] is True
    assert slapd.read(DOE_AD, "entryCSN") == before  # no second modify
    assert enable(backend)["already"] is False
    assert slapd.read(DOE_AD, "userAccountControl", "accountExpires") == {
        "userAccountControl": [str(AD_CONTROL)],
        "accountExpires": [AD_EXPIRES],
    }


def test_contract_ad_read_modify_write_loses_no_concurrent_change(slapd, allowed):
    stale = account_control_change(AD_CONTROL, True)  # read before another admin's change landed
    root = slapd.root()
    assert root.modify(DOE_AD, {"userAccountControl": [("MODIFY_REPLACE", [str(AD_CONTROL | 0x20)])]})  # PASSWD_NOTREQD
    assert not root.modify(DOE_AD, stale) and root.result["result"] == 16  # noSuchAttribute: the value read is gone
    root.unbind()
    # The adapter reads again and keeps the other change.
    disable(adapter(slapd, ActiveDirectoryIdentity))
    assert slapd.read(DOE_AD, "userAccountControl")["userAccountControl"] == [str(AD_CONTROL | 0x20 | ACCOUNTDISABLE)]


def test_contract_ad_already_done_reads_the_bit(slapd, allowed):
    backend = adapter(slapd, ActiveDirectoryIdentity)
    args = schemas.AccountAction(username="j.doe", reason="Phished: disable it.")
    assert run(backend.already_done("disable_account", args, WRITE)) is None
    disable(backend)
    assert run(backend.already_done("disable_account", args, WRITE))["disabled"] is True


def test_the_search_stays_under_the_base_dn(slapd, allowed):
    # The OpenLDAP adapter does not find AD-tree users, nor the AD adapter people outside its base.
    with pytest.raises(TargetNotFound):
        run(adapter(slapd, ActiveDirectoryIdentity, base_dn=PEOPLE).get_user(schemas.GetUser(username="j.doe")))
