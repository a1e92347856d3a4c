"""A stand-in vendor adapter that declares parameters, plain and secret, for the tests of the
parameter path (form, storage, audit, launcher, constructor). Registered only while a test
holds the `vault_adapter` fixture (tests/conftest.py), for the intel server."""

from toolserver import schemas
from toolserver.adapters.base import IntelBackend, Param, shaped
from toolserver.adapters.http import HttpBackend
from toolserver.adapters.shapes import Indicator


def _no_spaces(value: str) -> None:
    if " " in value:
        raise ValueError("The region takes no spaces.")


class VaultIntel(HttpBackend, IntelBackend):
    source = "vault:intel"
    params = (
        Param("collection", "Collection", required=True, pattern=r"[a-z0-9-]{1,40}", help="lower-case, e.g. ioc-main"),
        Param("region", "Region", validator=_no_spaces),
        Param("api_secret", "API secret", required=True, secret=True, help="The vendor's second secret."),
    )

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._credential}", "X-Api-Secret": self.param("api_secret")}

    async def health(self) -> str:
        await self._request("GET", "/health")
        return f"collection {self.param('collection')}"

    async def lookup_indicator(self, args: schemas.LookupIndicator) -> dict:
        body = await self._request(
            "GET", f"/collections/{self.param('collection')}/indicators", params={"value": args.value}
        )
        return shaped(Indicator, body)
