"""HttpBackend: the generic HTTP part of an adapter whose backend speaks JSON over HTTP.

Every connection goes through the egress guard (toolserver.egress: only hosts on the deployment's
allow-list, checked after resolving), and every failure becomes one of adapters.base's:

  transport timeout, 504            BackendError(TIMEOUT)
  connection failed, other 5xx      BackendError(UNAVAILABLE)
  401, 403                          BackendError(FORBIDDEN)
  429                               BackendError(RATE_LIMITED), retry_after_s from Retry-After
  404                               TargetNotFound(target)
  400, 409                          BackendRefused(the body's `detail`, at most 300 characters)
  a body that is not a JSON object  BackendError(MALFORMED)
  a body past MAX_RESPONSE_BYTES    BackendError(MALFORMED), counted once decoded (gzip, deflate)

An adapter subclasses it beside its capability's interface (`class LabSiem(LabBackend,
SiemBackend)`) and keeps only what is its backend's own: paths, payloads, how it pages, how it
authenticates (auth_headers()). This module runs in the server process without Django.
"""

from typing import ClassVar

import httpx2

from toolserver import egress
from toolserver.adapters.base import Backend, BackendError, BackendRefused, TargetNotFound, WriteContext
from toolserver.envelope import BackendFailure

DEFAULT_RETRY_AFTER_S = 30
# Headers of the body as sent, not of the decoded bytes a response is rebuilt from.
WIRE_HEADERS = ("content-encoding", "content-length", "transfer-encoding")


class HttpBackend(Backend):
    # The most of a body read, counted decoded: a small gzip body can inflate a thousandfold.
    MAX_RESPONSE_BYTES: ClassVar[int] = 16 * 1024 * 1024
    # Sent with every request besides auth_headers(), and not secret (so not redacted): e.g. an Accept.
    plain_headers: ClassVar[dict[str, str]] = {}

    def __init__(self, *, url: str, credential: str, timeout_s: float, params=None):
        super().__init__(url=url, credential=credential, timeout_s=timeout_s, params=params)
        self._http = egress.http_client(
            base_url=self.url,
            headers={**self.plain_headers, **self.auth_headers()},
            timeout=timeout_s,
            follow_redirects=False,  # a redirect could carry the credential to another host
        )

    def auth_headers(self) -> dict[str, str]:
        """How the credential is presented; a bearer token unless the adapter says otherwise."""
        return {"Authorization": f"Bearer {self._credential}"}

    def secrets(self) -> list[str]:
        return [*super().secrets(), *self.auth_headers().values()]

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(
        self,
        method: str,
        path: str,
        *,
        target: str = "",
        params=None,
        json=None,
        data=None,
        idempotency_key: str = "",
    ) -> dict:
        """One request; its JSON object, or the failure it maps to. None-valued query params are left out.

        `data` is a form body (application/x-www-form-urlencoded), as Splunk's REST API takes.
        """
        response = await self._response(
            method, path, target=target, params=params, json=json, data=data, idempotency_key=idempotency_key
        )
        return self._json_object(response)

    async def _response(
        self,
        method: str,
        path: str,
        *,
        target: str = "",
        params=None,
        json=None,
        data=None,
        headers=None,
        idempotency_key: str = "",
    ) -> httpx2.Response:
        """One request; its response when the status is a success, or the failure it maps to.

        For an adapter that needs more of the answer than a JSON object (its media type, its
        headers); it reads the body with _json_object(), so a body that is not one is MALFORMED
        here too.
        """
        headers = dict(headers or {})
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        params = {key: value for key, value in (params or {}).items() if value is not None}
        request = self._http.build_request(method, path, params=params, json=json, data=data, headers=headers)
        try:
            streamed = await self._http.send(request, stream=True)
            try:
                body = await self._read_bounded(streamed)
            finally:
                await streamed.aclose()
        except httpx2.TimeoutException:  # connecting, or reading the body
            raise BackendError(BackendFailure.TIMEOUT) from None
        except httpx2.TransportError:
            raise BackendError(BackendFailure.UNAVAILABLE) from None
        except httpx2.DecodingError:  # a body its Content-Encoding does not decode
            raise BackendError(BackendFailure.MALFORMED) from None
        status = streamed.status_code
        # Redacted whole, before any of it is cut to a length (a detail's 300 characters, a string's 1,000): a
        # credential the answer quotes (a refusal echoing the request, a log line holding a token) would
        # keep its first part past the cut, which no form of it matches.
        body = self.redactor()(body)
        kept = [(key, value) for key, value in streamed.headers.multi_items() if key.lower() not in WIRE_HEADERS]
        response = httpx2.Response(status, headers=kept, content=body, request=request)
        if status == 404:
            raise TargetNotFound(target or path)
        if status in (400, 409):  # 409: the backend saw this idempotency key for another action
            raise BackendRefused(self._detail(response))
        if status in (401, 403):
            raise BackendError(BackendFailure.FORBIDDEN, status=status)
        if status == 429:
            raise BackendError(BackendFailure.RATE_LIMITED, status=status, retry_after_s=self._retry_after(response))
        if status == 504:
            raise BackendError(BackendFailure.TIMEOUT, status=status)
        if status >= 500:
            raise BackendError(BackendFailure.UNAVAILABLE, status=status)
        return response

    async def _read_bounded(self, response: httpx2.Response) -> bytes:
        """The decoded body; BackendError(MALFORMED) once it passes MAX_RESPONSE_BYTES (the caller closes it)."""
        parts, size = [], 0
        async for part in response.aiter_bytes():
            size += len(part)
            if size > self.MAX_RESPONSE_BYTES:
                raise BackendError(BackendFailure.MALFORMED, status=response.status_code)
            parts.append(part)
        return b"".join(parts)

    @staticmethod
    def _json_object(response: httpx2.Response) -> dict:
        """The response's body as a JSON object; BackendError(MALFORMED) when it is not one."""
        try:
            body = response.json()
        except ValueError:
            raise BackendError(BackendFailure.MALFORMED, status=response.status_code) from None
        if not isinstance(body, dict):
            raise BackendError(BackendFailure.MALFORMED, status=response.status_code)
        return body

    async def _write(self, path: str, payload: dict, write: WriteContext, *, target: str) -> dict:
        """A privileged write, carrying its idempotency key so the backend deduplicates too."""
        return await self._request("POST", path, target=target, json=payload, idempotency_key=write.idempotency_key)

    @staticmethod
    def _retry_after(response: httpx2.Response) -> int:
        try:
            return max(1, int(response.headers.get("Retry-After", str(DEFAULT_RETRY_AFTER_S))))
        except ValueError:
            return DEFAULT_RETRY_AFTER_S

    @staticmethod
    def _detail(response: httpx2.Response) -> str:
        try:
            return str(response.json().get("detail", "the backend refused the request"))[:300]
        except (ValueError, AttributeError):
            return "the backend refused the request"
