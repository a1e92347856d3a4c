"""Health of the three things the console depends on: database, broker, channel layer."""

import asyncio
import logging
import uuid

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection

CHECK_TIMEOUT_S = 3.0
logger = logging.getLogger(__name__)


def _database_ok() -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    finally:
        connection.close()  # a probe leaves no connection behind in its worker thread


def _broker_ok() -> None:
    from console.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=CHECK_TIMEOUT_S)


async def _channel_layer_ok() -> None:
    """A message sent to a fresh channel comes back: the layer carries traffic.

    A normal channel (no "!"), not a process-local one from new_channel(): channels_redis receives
    every process-local channel under one lock per process, popping one Redis list per prefix, so a
    "healthz." channel waited behind each open websocket's 5 s pop of the "specific." list, timed
    out, and left its message behind for the next check to drain.
    """
    layer = get_channel_layer()
    token = uuid.uuid4().hex
    channel = f"healthz.{token}"
    await layer.send(channel, {"type": "healthz", "token": token})
    message = await layer.receive(channel)
    if message.get("token") != token:
        raise RuntimeError("channel layer returned another message")


async def check_all() -> dict[str, str]:
    async def run(name: str, check) -> str:
        try:
            await asyncio.wait_for(check(), timeout=CHECK_TIMEOUT_S)
            return "ok"
        except Exception as exc:  # noqa: BLE001 - any failure is "down"; what failed is for the log, not the public answer
            logger.warning("healthz: %s is down (%s)", name, type(exc).__name__)
            return "down"

    database, broker, channel_layer = await asyncio.gather(
        run("database", sync_to_async(_database_ok, thread_sensitive=True)),
        run("broker", sync_to_async(_broker_ok, thread_sensitive=False)),
        run("channel_layer", _channel_layer_ok),
    )
    return {
        "database": database,
        "broker": broker,
        "channel_layer": channel_layer,
        "mode": "production" if settings.PRODUCTION else "embedded",
    }
