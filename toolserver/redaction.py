"""A credential, and its common encodings, replaced by a fixed marker in the lines a server answers.

An external server holds its own credential; one that echoes it (a debug tool printing its
environment, an error quoting its key) must not pass it to the worker, the audit trail or the
model. The launcher's relay (toolserver.launch), the only other process that holds it, redacts
every line before the worker reads it. A built-in server redacts its adapter's secrets
(Backend.secrets()) from every envelope it answers the same way (toolserver.servers.run_tool).
Stdlib only: the launcher stays light.

The forms: the credential as given, and for a header value like "Bearer <token>" the token too (a
"Basic" one's decoded "user:password" and password); each raw, base64 (standard and URL-safe, at
any alignment inside a longer base64 text), URL-encoded, and JSON-escaped once or twice (a server's
own JSON inside a JSON-RPC string).
"""

import base64
import binascii
import json
import re
from urllib.parse import quote, quote_plus

MARKER = "[redacted credential]"
MIN_PART = 6  # a header's token or a Basic password shorter than this is not redacted on its own
MIN_BASE64_CORE = 8  # shorter cores of a base64 text would match text that is not the credential


def _parts(secret: str) -> set[str]:
    parts = {secret}
    scheme, _, rest = secret.partition(" ")
    rest = rest.strip()
    if rest and len(rest) >= MIN_PART:
        parts.add(rest)
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(rest, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                decoded = ""
            password = decoded.partition(":")[2]
            parts |= {value for value in (decoded, password) if len(value) >= MIN_PART}
    return parts


def _base64_forms(raw: bytes) -> set[bytes]:
    """Its base64 whole, and the part of it that is the same wherever it starts inside longer data."""
    found = {base64.b64encode(raw), base64.b64encode(raw).rstrip(b"=")}
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw)
        # Characters wholly inside the credential's bits: not those shared with what comes before or after.
        core = encoded[(8 * offset + 5) // 6 : 8 * (offset + len(raw)) // 6]
        if len(core) >= MIN_BASE64_CORE:
            found.add(core)
    return found | {form.translate(bytes.maketrans(b"+/", b"-_")) for form in found}


def _url_forms(part: str) -> set[bytes]:
    upper = {quote(part, safe=""), quote_plus(part), quote(part)}
    lower = {re.sub(r"%[0-9A-F]{2}", lambda match: match.group().lower(), form) for form in upper}
    return {form.encode() for form in upper | lower}


def _json_escaped(form: bytes) -> set[bytes]:
    try:
        text = form.decode()
    except UnicodeDecodeError:
        return set()
    found = set()
    for ascii_only in (True, False):
        once = json.dumps(text, ensure_ascii=ascii_only)[1:-1]
        twice = json.dumps(once, ensure_ascii=ascii_only)[1:-1]
        found |= {once, twice, once.replace("/", "\\/"), twice.replace("/", "\\/")}
    return {value.encode() for value in found}


def forms(secret: str) -> list[bytes]:
    """Every form of `secret` to replace (the Redactor tries the longest first, so the longest match wins)."""
    if not secret:
        return []
    encoded: set[bytes] = set()
    for part in _parts(secret):
        raw = part.encode()
        encoded |= {raw} | _base64_forms(raw) | _url_forms(part)
    escaped = set().union(*(_json_escaped(form) for form in encoded))
    return sorted(encoded | escaped)


class Redactor:
    """Replaces every form of the secrets given in a line of bytes; a no-op without one."""

    def __init__(self, *secrets: str):
        found = sorted({form for secret in secrets for form in forms(secret)}, key=lambda form: (-len(form), form))
        self._pattern = re.compile(b"|".join(re.escape(form) for form in found)) if found else None
        self._marker = MARKER.encode()

    def __call__(self, line: bytes) -> bytes:
        return self._pattern.sub(self._marker, line) if self._pattern is not None else line

    def text(self, value: str) -> str:
        """`value` redacted, as text (surrogates kept: a backend's JSON may hold a lone one)."""
        if self._pattern is None:
            return value
        return self(value.encode("utf-8", "surrogatepass")).decode("utf-8", "surrogatepass")
