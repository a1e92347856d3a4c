import json

import pytest

from tests import seeded_estate
from toolserver.lab import estate as lab_estate
from toolserver.lab.keys import SERVER_SCOPES, issue_key


@pytest.fixture
def estate(estate_copies, db):
    """The real estate, freshly seeded (tests/seeded_estate.py); the module, for its story constants."""
    seeded_estate.seed()
    return lab_estate


@pytest.fixture
def lab_keys(db) -> dict[str, str]:
    """One key per tool server, by server name (SERVER_SCOPES): the plaintexts."""
    return {server: issue_key(server, scopes) for server, scopes in SERVER_SCOPES.items()}


class LabApi:
    """The lab API through Django's test client, as a tool server would call it."""

    def __init__(self, client, keys: dict[str, str]):
        self.client = client
        self.keys = keys

    def _auth(self, server, token):
        token = token if token is not None else self.keys[server]
        return {"Authorization": f"Bearer {token}"} if token else {}

    def get(self, path: str, server: str | None = None, *, token: str | None = None, **query):
        return self.client.get(f"/lab/api/{path}", query, headers=self._auth(server, token))

    def post(
        self,
        path: str,
        server: str | None = None,
        body=None,
        *,
        token: str | None = None,
        idempotency_key: str = "",
        raw: bytes | None = None,
    ):
        headers = self._auth(server, token)
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        data = raw if raw is not None else json.dumps(body if body is not None else {})
        return self.client.post(f"/lab/api/{path}", data, content_type="application/json", headers=headers)


@pytest.fixture
def lab(client, lab_keys) -> LabApi:
    return LabApi(client, lab_keys)
