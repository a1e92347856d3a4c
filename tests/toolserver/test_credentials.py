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


@pytest.mark.parametrize("reference", ["", "env:NOPE", "file:/nonexistent/key"])
def test_unresolvable_references_raise_without_secrets(reference):
    with pytest.raises(credentials.CredentialError):
        credentials.resolve(reference)


def test_an_empty_secret_is_refused_and_the_message_hides_inline_values(tmp_path):
    (tmp_path / "empty.key").write_text("")
    with pytest.raises(credentials.CredentialError, match="empty"):
        credentials.resolve(f"file:{tmp_path / 'empty.key'}")
    with pytest.raises(credentials.CredentialError) as caught:
        credentials.resolve("value:")
    assert "value:" in str(caught.value)


def test_fingerprint_tells_secrets_apart_without_revealing_them():
    assert credentials.fingerprint("a-secret") != credentials.fingerprint("b-secret")
    assert "a-secret" not in credentials.fingerprint("a-secret")
