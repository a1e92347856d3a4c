"""A browser's part of a WebAuthn assertion, without a browser: a software authenticator holding one passkey
(ES256 on P-256) for the console's test origin, whose assertions the console checks as it would a real one's."""

import base64
import hashlib
import json
import os
import struct

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from django_otp_webauthn.models import WebAuthnCredential

ORIGIN, RP_ID = "http://testserver", "testserver"  # the test client's


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class SoftAuthenticator:
    def __init__(self):
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.credential_id = os.urandom(32)
        self.count = 0

    def cose_key(self) -> bytes:
        """The public key as a COSE_Key, CBOR by hand: {1: 2 (EC2), 3: -7 (ES256), -1: 1 (P-256), -2: x, -3: y}."""
        numbers = self.key.public_key().public_numbers()
        x, y = numbers.x.to_bytes(32, "big"), numbers.y.to_bytes(32, "big")
        return bytes.fromhex("a5010203262001215820") + x + bytes.fromhex("225820") + y

    def held_by(self, user) -> WebAuthnCredential:
        """Its passkey as `user`'s confirmed credential, as a registration would have stored it."""
        return WebAuthnCredential.objects.create(
            user=user, name="Soft passkey", confirmed=True, credential_id=self.credential_id, public_key=self.cose_key()
        )

    def get(self, options: dict) -> dict:
        """navigator.credentials.get's answer to the console's options: user present and verified, signed."""
        self.count += 1
        client_data = json.dumps(
            {"type": "webauthn.get", "challenge": options["challenge"], "origin": ORIGIN, "crossOrigin": False}
        ).encode()
        auth_data = hashlib.sha256(RP_ID.encode()).digest() + bytes([0x05]) + struct.pack(">I", self.count)
        signature = self.key.sign(auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256()))
        return {
            "id": b64(self.credential_id),
            "rawId": b64(self.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64(client_data),
                "authenticatorData": b64(auth_data),
                "signature": b64(signature),
                "userHandle": None,
            },
            "clientExtensionResults": {},
        }
