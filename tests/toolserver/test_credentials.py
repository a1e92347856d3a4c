import os

import pytest

from toolserver import credentials


def test_a_file_reference_is_read_and_a_rotation_changes_its_version(tmp_path):
    path = tmp_path / "edr-response.key"
    path.write_text("first-secret\n")
    reference = f"file:{path}"
    assert credentials.resolve(reference) == "first-secret"
    before = credentials.version(reference)

    replacement = tmp_path / "new.key"
    replacement.write_text("second-secret")
    os.replace(replacement, path)
    assert credentials.resolve(reference) == "second-secret"
    assert credentials.version(reference) != before


KEY = "a-credentials-key-for-these-tests-0123456789-0123456789"


@pytest.mark.parametrize("reference", ["", "env:NOPE", "file:/nonexistent/key", "value:a-secret"])
def test_unresolvable_references_raise_without_secrets(reference):
    with pytest.raises(credentials.CredentialError) as caught:
        credentials.resolve(reference, environ={})
    assert "a-secret" not in str(caught.value)


def test_an_empty_secret_is_refused(tmp_path):
    (tmp_path / "empty.key").write_text("")
    with pytest.raises(credentials.CredentialError, match="empty"):
        credentials.resolve(f"file:{tmp_path / 'empty.key'}")
    with pytest.raises(credentials.CredentialError, match="empty"):
        credentials.resolve("env:EMPTY", environ={"EMPTY": " "})


def test_an_env_reference_reads_its_one_variable():
    assert credentials.resolve("env:EDR_ISOLATE_KEY", environ={"EDR_ISOLATE_KEY": "from-env\n"}) == "from-env"


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
        ("env:", "variable name"),
        ("env:1ABC", "variable name"),
        ("env:EDR KEY", "variable name"),
        ("env:GATEHOUSE_SECRET_KEY", "Gatehouse's own setting"),
        ("env:DATABASE_URL", "Gatehouse's own setting"),
        ("file:relative/path", "absolute path"),
        ("value:a-secret", "expected env:NAME or file:/path"),
        ("sealed:abc", "expected env:NAME or file:/path"),
    ],
)
def test_an_admin_may_reference_only_an_env_variable_or_an_absolute_file(reference, problem):
    with pytest.raises(ValueError, match=problem):
        credentials.check_reference(reference)
    assert credentials.check_reference(" env:EDR_ISOLATE_KEY ") == "env:EDR_ISOLATE_KEY"
    assert credentials.check_reference("file:/run/secrets/edr") == "file:/run/secrets/edr"


def test_fingerprints_tell_secrets_apart_without_revealing_them(settings):
    assert credentials.fingerprint("a-secret") != credentials.fingerprint("b-secret")
    assert len(credentials.fingerprint("a-secret")) == 12
    before = credentials.fingerprint("a-secret")
    settings.AUDIT_HASH_KEY = "another-deployment-key-0123456789-0123456789-0123456789"
    assert credentials.fingerprint("a-secret") != before  # keyed: no table of guesses works across deployments
