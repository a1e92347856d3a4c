import os
import re

import pytest

from toolserver import credentials

pytestmark = pytest.mark.any_mode  # its tests that use no database run once, in the embedded run


def own(tmp_path, server="edr-response") -> dict:
    """The environment a server's launcher gets: its name and the credentials folder."""
    return {credentials.SERVER_VARIABLE: server, credentials.DIR_VARIABLE: str(tmp_path)}


def test_a_file_reference_is_read_and_a_rotation_changes_its_version(tmp_path):
    path = tmp_path / "edr-response.key"
    path.write_text("first-secret\n")
    reference = f"file:{path}"
    assert credentials.resolve(reference, own(tmp_path)) == "first-secret"
    before = credentials.version(reference)

    replacement = tmp_path / "new.key"
    replacement.write_text("second-secret")
    os.replace(replacement, path)
    assert credentials.resolve(reference, own(tmp_path)) == "second-secret"
    assert credentials.version(reference) != before


def test_a_file_in_the_servers_own_folder_resolves_through_a_symlink_inside_the_folder(tmp_path):
    # How Kubernetes mounts a secret: <folder>/<name> -> ..data/<name> -> ..2026_12_04/<name>
    (tmp_path / "edr-response" / "..2026_12_04").mkdir(parents=True)
    (tmp_path / "edr-response" / "..2026_12_04" / "key").write_text("mounted-secret")
    (tmp_path / "edr-response" / "..data").symlink_to("..2026_12_04")
    (tmp_path / "edr-response" / "key").symlink_to("..data/key")
    assert credentials.resolve(f"file:{tmp_path}/edr-response/key", own(tmp_path)) == "mounted-secret"


@pytest.mark.parametrize("path", ["edr-response.key", "edr-response/key"])
def test_a_whole_folder_mounted_as_one_secret_resolves_each_servers_key_through_its_data_links(tmp_path, path):
    # Kubernetes, the folder one secret (its items' paths edr-response.key or edr-response/key):
    # <folder>/<first part> -> ..data/<first part>, ..data -> ..2026_12_04
    (tmp_path / "..2026_12_04" / path).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / "..2026_12_04" / path).write_text("mounted-secret")
    (tmp_path / "..data").symlink_to("..2026_12_04")
    first = path.split("/")[0]
    (tmp_path / first).symlink_to(f"..data/{first}")
    assert credentials.resolve(f"file:{tmp_path}/{path}", own(tmp_path)) == "mounted-secret"


@pytest.mark.parametrize(
    "path, problem",
    [
        ("/etc/hostname", "names edr-response.key or a file under edr-response/"),
        ("{dir}/siem.key", "names edr-response.key or a file under edr-response/"),  # another server's key
        ("{dir}/edr-response/../siem.key", "may not contain '..'"),
        ("{dir}/edr-response/link", "must stay inside the credentials folder"),  # a symlink out of it
        ("{dir}/edr-response/siem-link", "not through a link to another's"),  # a symlink to another server's key
        ("{dir}/edr-response.key", "not through a link to another's"),  # its own name, linked to another's key
        ("{dir}/../outside/edr-response.key", "may not contain '..'"),
    ],
)
def test_a_file_reference_resolves_only_to_the_servers_own_file_in_the_credentials_folder(tmp_path, path, problem):
    folder = tmp_path / "credentials"
    (folder / "edr-response").mkdir(parents=True)
    (folder / "siem.key").write_text("the-siem-secret")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "edr-response.key").write_text("outside-secret")
    (folder / "edr-response" / "link").symlink_to(tmp_path / "outside" / "edr-response.key")
    (folder / "edr-response" / "siem-link").symlink_to("../siem.key")
    (folder / "edr-response.key").symlink_to("siem.key")
    reference = "file:" + path.format(dir=folder)
    with pytest.raises(credentials.CredentialError, match=re.escape(problem)) as caught:
        credentials.resolve(reference, own(folder))
    assert "secret" not in str(caught.value)
    with pytest.raises(ValueError, match=re.escape(problem)):
        credentials.check_reference(reference, "edr-response", folder)


def test_an_unreadable_file_and_a_missing_one_say_the_same(tmp_path):
    """No oracle of which files exist: the message never carries the OS error."""
    (tmp_path / "edr-response").mkdir()
    (tmp_path / "edr-response" / "a-folder").mkdir()  # exists, cannot be read as a file
    messages = set()
    for name in ("missing", "a-folder"):
        with pytest.raises(credentials.CredentialError) as caught:
            credentials.resolve(f"file:{tmp_path}/edr-response/{name}", own(tmp_path))
        messages.add(str(caught.value).replace(name, "NAME"))
    assert messages == {f"the credential file {tmp_path}/edr-response/NAME cannot be read"}


def test_a_reference_to_the_deployments_environment_is_refused():
    """A variable of the deployment sits in every process's environment, the model's worker's too."""
    with pytest.raises(credentials.CredentialError, match="env: references are not accepted"):
        credentials.resolve("env:EDR_ISOLATE_KEY", environ={"EDR_ISOLATE_KEY": "from-env"})


KEY = "a-credentials-key-for-these-tests-0123456789-0123456789"


@pytest.mark.parametrize("reference", ["", "env:NOPE", "file:/nonexistent/key", "value:a-secret"])
def test_unresolvable_references_raise_without_secrets(reference):
    with pytest.raises(credentials.CredentialError) as caught:
        credentials.resolve(reference, environ={})
    assert "a-secret" not in str(caught.value)


def test_an_empty_secret_is_refused(tmp_path):
    (tmp_path / "edr-response.key").write_text(" \n")
    with pytest.raises(credentials.CredentialError, match="empty"):
        credentials.resolve(f"file:{tmp_path / 'edr-response.key'}", own(tmp_path))


def test_a_sealed_secret_opens_only_with_its_key_and_its_token_does_not_hold_it():
    token = credentials.seal("the-edr-secret", KEY)
    assert "the-edr-secret" not in token
    assert credentials.seal("the-edr-secret", KEY) != token  # a fresh IV each time
    assert credentials.resolve(f"sealed:{token}", environ={credentials.KEY_VARIABLE: KEY}) == "the-edr-secret"
    with pytest.raises(credentials.CredentialError, match="does not open") as caught:
        credentials.resolve(f"sealed:{token}", environ={credentials.KEY_VARIABLE: KEY + "-other"})
    assert token not in str(caught.value)
    with pytest.raises(credentials.CredentialError, match="not set"):
        credentials.resolve(f"sealed:{token}", environ={})


def test_the_sealing_key_rotates_the_first_seals_and_every_one_opens():
    old = credentials.seal("kept-across-rotation", KEY)
    rotated = f"new-credentials-key-0123456789-0123456789-0123456789,{KEY}"
    assert credentials.unseal(old, rotated) == "kept-across-rotation"
    assert credentials.unseal(credentials.seal("after", rotated), rotated) == "after"
    with pytest.raises(credentials.CredentialError):
        credentials.unseal(credentials.seal("after", rotated), KEY)


def test_a_reseal_moves_a_secret_to_the_first_key_so_the_others_can_be_retired():
    old = credentials.seal("kept-across-reseal", KEY)
    new_key = "new-credentials-key-0123456789-0123456789-0123456789"
    resealed = credentials.reseal(old, f"{new_key},{KEY}")
    assert credentials.unseal(resealed, new_key) == "kept-across-reseal"
    with pytest.raises(credentials.CredentialError):
        credentials.unseal(resealed, KEY)
    with pytest.raises(credentials.CredentialError, match="does not open"):
        credentials.reseal(old, new_key)


@pytest.mark.parametrize(
    "reference, problem",
    [
        ("env:EDR_ISOLATE_KEY", "expected file:edr-response.key"),
        ("file:", "expected file:edr-response.key"),
        ("value:a-secret", "expected file:edr-response.key"),
        ("sealed:abc", "expected file:edr-response.key"),
        ("file:other.key", "names edr-response.key or a file under edr-response/"),
    ],
)
def test_an_admin_may_reference_only_the_servers_own_file(reference, problem, tmp_path):
    with pytest.raises(ValueError, match=re.escape(problem)):
        credentials.check_reference(reference, "edr-response", tmp_path)
    # A name in the folder is stored as its absolute path.
    assert (
        credentials.check_reference(" file:edr-response.key ", "edr-response", tmp_path)
        == f"file:{tmp_path}/edr-response.key"
    )
    assert (
        credentials.check_reference(f"file:{tmp_path}/edr-response/k", "edr-response", tmp_path)
        == f"file:{tmp_path}/edr-response/k"
    )


def test_fingerprints_tell_secrets_apart_without_revealing_them(settings):
    assert credentials.fingerprint("a-secret") != credentials.fingerprint("b-secret")
    assert len(credentials.fingerprint("a-secret")) == 12
    before = credentials.fingerprint("a-secret")
    settings.AUDIT_HASH_KEY = "another-deployment-key-0123456789-0123456789-0123456789"
    assert credentials.fingerprint("a-secret") != before  # keyed: no table of guesses works across deployments
