"""A real OpenID Connect provider on loopback for the sign-in tests, and a browser's part in its code flow.

The provider is oidc-provider-mock (authlib's authorization server in a Flask app on a thread):
discovery, JWKS, RS256-signed ID tokens, the UserInfo endpoint, and each user's claims set through its
own API (PUT /users/{sub}). Its ID token carries the user's claims over its own (authlib's
generate_id_token), which is how a test has it sign a token for another audience or issuer. The one
thing it cannot be made to do, send an unsigned token, is done by Tampering: a pass-through proxy in
front of it (an attacker between console and IdP) that strips the signature from the token answer.
"""

import base64
import json
import threading
from contextlib import contextmanager
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import httpx2 as httpx
from oidc_provider_mock import run_server_in_thread

from tests.support import STOP_S, WAIT_S

CLIENT_ID = "gatehouse-console"
CLIENT_SECRET = "test-only-oidc-client-secret-7f3a"
ROLE_GROUPS = {"soc-analysts": "analyst", "soc-leads": "manager", "soc-admins": "admin"}


@contextmanager
def provider(token_lifetime: timedelta = timedelta(hours=1)):
    """The provider's issuer URL, while it runs (stopped and joined when the block ends)."""
    with run_server_in_thread(access_token_max_age=token_lifetime) as server:
        yield f"http://localhost:{server.server_port}"


def configure(settings, issuer: str, *, client_id: str = CLIENT_ID) -> None:
    """The console's single sign-on, as GATEHOUSE_OIDC_* would set it."""
    settings.OIDC_ISSUER = issuer
    settings.OIDC_RP_CLIENT_ID = client_id
    settings.OIDC_RP_CLIENT_SECRET = CLIENT_SECRET
    settings.OIDC_ROLE_GROUPS = ROLE_GROUPS


def set_claims(issuer: str, sub: str, **claims) -> None:
    """The IdP's record of a person: their name, e-mail and groups (the provider's own API)."""
    httpx.put(f"{issuer}/users/{sub}", json=claims, timeout=WAIT_S).raise_for_status()


def sign_in(client, sub: str):
    """A browser's sign-in: the console sends it to the IdP, the person picks their account there
    (the IdP's form), the IdP sends it back with a code; the console's answer to that."""
    start = client.get("/oidc/authenticate/")
    assert start.status_code == 302, start
    chosen = httpx.post(start["Location"], data={"sub": sub}, timeout=WAIT_S)
    assert chosen.status_code == 302, chosen.text
    return client.get(chosen.headers["location"])


def code_from(issuer: str, authorize_url: str, sub: str) -> str:
    """A code from `issuer` for the authorization request the console made of another provider
    (same client, redirect, nonce and PKCE challenge): what an attacker holding an account there gets."""
    query = urlsplit(authorize_url).query
    chosen = httpx.post(f"{issuer}/oauth2/authorize?{query}", data={"sub": sub}, timeout=WAIT_S)
    assert chosen.status_code == 302, chosen.text
    return parse_qs(urlsplit(chosen.headers["location"]).query)["code"][0]


def unsigned(token: str) -> str:
    """The same claims with `alg: none` and no signature."""
    header = base64.urlsafe_b64encode(json.dumps({"alg": "none", "typ": "JWT"}).encode()).rstrip(b"=").decode()
    return f"{header}.{token.split('.')[1]}."


class Tampering:
    """What the proxy does to the token endpoint's answer: strip the ID token's signature, or answer
    with the tokens another provider issues for a code of its own (`token_from`: its URL and code)."""

    def __init__(self, url: str, strip_signature: bool):
        self.url = url
        self.strip_signature = strip_signature
        self.token_from: tuple[str, str] | None = None


@contextmanager
def tampering(issuer: str, *, strip_signature: bool = True):
    """A pass-through proxy to the provider (which names itself after the Host it is asked as, so its
    issuer is the proxy's URL) that tampers with its token endpoint's answers (Tampering)."""
    upstream = httpx.Client(base_url=issuer, timeout=WAIT_S)
    tamper = Tampering("", strip_signature)

    class Handler(BaseHTTPRequestHandler):
        def relay(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k: v for k, v in self.headers.items() if k.lower() not in {"content-length", "connection"}}
            token_request = self.path.startswith("/oauth2/token")
            if token_request and tamper.token_from:
                other, code = tamper.token_from
                form = {k: v[0] for k, v in parse_qs(body.decode()).items()} | {"code": code}
                headers.pop("Host", None)
                headers.pop("host", None)
                answer = httpx.post(f"{other}/oauth2/token", data=form, headers=headers, timeout=WAIT_S)
            else:
                answer = upstream.request(self.command, self.path, content=body, headers=headers)
            content = answer.content
            if token_request and tamper.strip_signature and answer.status_code == 200:
                tokens = answer.json()
                tokens["id_token"] = unsigned(tokens["id_token"])
                content = json.dumps(tokens).encode()
            self.send_response(answer.status_code)
            for name, value in answer.headers.items():
                if name.lower() not in {"content-length", "connection", "transfer-encoding", "content-encoding"}:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        do_GET = do_POST = do_PUT = relay

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    tamper.url = f"http://localhost:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield tamper
    finally:
        server.shutdown()
        server.server_close()
        thread.join(STOP_S)
        upstream.close()
