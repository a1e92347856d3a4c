"""Websockets of the real ASGI application as a browser opens them: its Host, its Origin, its session cookie."""

from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

HOST = b"127.0.0.1"  # what a browser sends as Host; the origin must match it exactly
ORIGIN = (b"origin", b"http://127.0.0.1")
CONNECT_BOUND = 15  # seconds: a bound on a wait for the server's answer, not a pause


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def cookie_of(client: Client) -> bytes:
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode()


class Socket(WebsocketCommunicator):
    """channels' communicator, given a connect bound for a loaded machine: its default second is less
    than a connect's sign-in, factor and grant checks take when four test runs share two cores."""

    async def connect(self, timeout=CONNECT_BOUND):  # noqa: ASYNC109 - channels' own parameter
        return await super().connect(timeout)


async def socket(
    path: str, user=None, origin=ORIGIN, *, client: Client | None = None, host: bytes = HOST
) -> WebsocketCommunicator:
    """A socket for `user` (signed in anew) or for the sign-in of `client`."""
    from console.asgi import (
        application,  # its start-up checks reach the database: not at collection
    )

    if user is not None and client is None:
        client = await database_sync_to_async(signed_in)(user)
    headers = [(b"host", host), origin] + ([(b"cookie", cookie_of(client))] if client else [])
    return Socket(application, path, headers=headers)


async def refused(communicator: WebsocketCommunicator) -> bool:
    connected, _ = await communicator.connect()
    await communicator.disconnect()
    return not connected


async def next_output(communicator: WebsocketCommunicator, timeout: float = 5):  # noqa: ASYNC109 - channels' timeout
    """What the server sends next, or None if it sends nothing within the timeout."""
    try:
        return await communicator.receive_output(timeout)
    except TimeoutError:
        return None


async def received(communicator: WebsocketCommunicator, schema, timeout: float = 5) -> dict:  # noqa: ASYNC109 - as the communicator's own
    """The next message, asserted to be exactly one of investigations.live_messages' schemas: it
    validates, and read back it is the same message (no field unknown to the schema, none missing)."""
    message = await communicator.receive_json_from(timeout=timeout)
    assert schema.model_validate(message).as_json() == message, message
    return message


def queries_made(monkeypatch) -> list[str]:
    """Every SQL statement run from now on, in any thread (Django's cursor, wrapped: the library's, not ours)."""
    from django.db.backends import utils

    made: list[str] = []
    execute = utils.CursorWrapper._execute_with_wrappers

    def counted(self, sql, *args, **kwargs):
        made.append(sql)
        return execute(self, sql, *args, **kwargs)

    monkeypatch.setattr(utils.CursorWrapper, "_execute_with_wrappers", counted)
    return made
