import hashlib
import stat
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from toolserver.lab.keys import SERVER_SCOPES, fingerprint
from toolserver.lab.models import LabKey


def run_lab_keys(*args) -> str:
    out = StringIO()
    call_command("lab_keys", *args, stdout=out)
    return out.getvalue()


def test_server_scopes_are_least_privilege():
    assert SERVER_SCOPES == {
        "siem": ["siem:read"],
        "edr": ["edr:read"],
        "edr-response": ["edr:isolate"],
        "identity": ["identity:read", "identity:write"],
        "ticketing": ["tickets:write"],
        "intel": ["intel:read"],
    }


def test_lab_keys_writes_one_private_file_per_server_and_prints_no_key(db, tmp_path, client):
    directory = tmp_path / "keys"
    output = run_lab_keys("--write-dir", str(directory))
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert sorted(path.name for path in directory.iterdir()) == sorted(f"{server}.key" for server in SERVER_SCOPES)
    for server, scopes in SERVER_SCOPES.items():
        path = directory / f"{server}.key"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        key = path.read_text()
        assert key not in output
        assert fingerprint(key) in output and fingerprint(key) == hashlib.sha256(key.encode()).hexdigest()[:8]
        body = client.get("/lab/api/health", headers={"Authorization": f"Bearer {key}"}).json()
        assert body == {"status": "ok", "key": server, "scopes": scopes}


def test_lab_keys_again_rotates_every_key(db, tmp_path, client):
    directory = tmp_path / "keys"
    run_lab_keys("--write-dir", str(directory))
    old = (directory / "edr.key").read_text()
    run_lab_keys("--write-dir", str(directory))
    new = (directory / "edr.key").read_text()
    assert new != old
    assert client.get("/lab/api/health", headers={"Authorization": f"Bearer {old}"}).status_code == 401
    assert client.get("/lab/api/health", headers={"Authorization": f"Bearer {new}"}).status_code == 200
    assert LabKey.objects.filter(revoked_at__isnull=True).count() == len(SERVER_SCOPES)


def test_lab_keys_can_rotate_one_server(db, tmp_path):
    directory = tmp_path / "keys"
    run_lab_keys("--write-dir", str(directory), "intel")
    assert [path.name for path in directory.iterdir()] == ["intel.key"]
    with pytest.raises(CommandError):
        run_lab_keys("--write-dir", str(directory), "mainframe")


def test_lab_keys_refuses_a_directory_others_can_read(db, tmp_path):
    directory = tmp_path / "open"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    with pytest.raises(CommandError):
        run_lab_keys("--write-dir", str(directory))
    assert not any(directory.iterdir()) and not LabKey.objects.exists()
