"""Approval channels (issue 15): email behind the outbound interface, every delivery recorded and retried,
changes told only once committed, and a signed webhook whose decisions go through the same gate.

On real parts: the lab and its MCP servers behind the requests, a real SMTP server on 127.0.0.1 (which
refuses, then accepts), a real HTTP receiver for the webhook's posts, the console's own callback view.
"""

import json
import logging
import socketserver
import ssl
import threading
import time
from contextlib import contextmanager
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import trustme
from django.conf import settings
from django.db import connection, transaction
from django.test import Client
from django.utils import timezone
from guardian.shortcuts import assign_perm

from investigations.approvals import services as approvals
from investigations.approvals.channels import deliveries
from investigations.approvals.channels.base import OUTBOUND, DeliveryFailed, Kind, OutboundChannel
from investigations.approvals.channels.webhook import sign, signed_headers
from investigations.models import (
    ActionApproval,
    ActionRequest,
    AuditRecord,
    ChannelDelivery,
    Investigation,
    ToolPolicy,
)
from investigations.runs import services
from tests.support import WAIT_S
from toolserver import idempotency
from toolserver.catalog import find_tool
from toolserver.gateway import Gateway
from toolserver.schemas import parse_arguments

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "webhook-test-secret-Qm9yZWFsaXMtNzc0MS1rZXktZm9yLXRlc3Rz"
CALLBACK = "/channels/webhook/callback"


# -- a real SMTP server that refuses the message, until told to take it ---------------------------
class SmtpServer(socketserver.ThreadingTCPServer):
    """Speaks just enough SMTP for Django's backend; answers DATA with 554 while `refusing`."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), SmtpSession)
        self.refusing = True
        self.received: list[tuple[list[str], str]] = []
        self.refused = 0

    @property
    def port(self) -> int:
        return self.server_address[1]


class SmtpSession(socketserver.StreamRequestHandler):
    def handle(self):
        server: SmtpServer = self.server
        recipients: list[str] = []
        self.say("220 test.smtp ready")
        while line := self.rfile.readline():
            command = line.decode().strip().upper()
            if command.startswith(("EHLO", "HELO")):
                self.say("250 test.smtp")
            elif command.startswith("MAIL FROM"):
                self.say("250 ok")
            elif command.startswith("RCPT TO"):
                recipients.append(line.decode().strip()[8:].strip("<> \r\n"))
                self.say("250 ok")
            elif command == "DATA":
                if server.refusing:
                    server.refused += 1
                    self.say("554 5.7.1 not accepting mail now")
                    continue
                self.say("354 go ahead")
                body = b""
                while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                    body += chunk
                server.received.append((recipients, body.decode()))
                self.say("250 queued")
            elif command == "QUIT":
                self.say("221 bye")
                return
            else:
                self.say("250 ok")  # RSET, NOOP

    def say(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")
        self.wfile.flush()


@pytest.fixture
def smtp(settings):
    server = SmtpServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", server.port, 10
    yield server
    server.shutdown()
    server.server_close()


# -- a real HTTP receiver for the webhook's posts ---------------------------------------------------
class Receiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), ReceiverHandler)
        self.posts: list[tuple[dict, bytes]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


class ReceiverHandler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.posts.append(({key.lower(): value for key, value in self.headers.items()}, body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook(settings):
    """The webhook channel enabled beside email, posting to a real local receiver; `chat-ana` is ana."""
    receiver = Receiver()
    thread = threading.Thread(target=receiver.serve_forever, daemon=True)
    thread.start()
    settings.APPROVAL_CHANNELS = ["email", "webhook"]
    settings.APPROVAL_WEBHOOK_SECRET = SECRET
    settings.APPROVAL_WEBHOOK_URL = receiver.url
    settings.APPROVAL_WEBHOOK_USERS = {"chat-ana": "ana", "chat-max": "max", "chat-ghost": "nobody-here"}
    yield receiver
    receiver.shutdown()
    receiver.server_close()


def overdue(request: ActionRequest, settings) -> None:
    settings.APPROVAL_NOTIFY_AFTER_S = 60
    ActionRequest.objects.filter(pk=request.pk).update(created_at=request.created_at - timedelta(minutes=5))


def later(delivery: ChannelDelivery) -> None:
    """Time passes: the delivery's backoff is over."""
    ChannelDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())


# -- email --------------------------------------------------------------------------------------
def test_approvers_are_emailed_once_about_a_request_that_waits_long(waiting, make_user, settings, mailoutbox):
    _, request = waiting
    make_user("on-call", "analyst", email="oncall@soc.example")
    make_user("boss", "manager", email="boss@soc.example")  # may not approve: not told
    assert deliveries.sweep() == []  # not overdue yet
    overdue(request, settings)
    (sent,) = deliveries.sweep()
    assert deliveries.sweep() == []
    (mail,) = mailoutbox
    assert mail.to == ["oncall@soc.example"]
    assert "isolate_host on host=ws-fin-07" in mail.subject
    assert f"/approvals/{request.pk}/" in mail.body
    delivery = ChannelDelivery.objects.get(pk=sent)
    assert (delivery.request_id, delivery.channel, delivery.kind, delivery.state, delivery.attempts) == (
        request.pk,
        "email",
        "overdue",
        "sent",
        1,
    )


def test_an_approver_of_the_tool_who_may_not_see_the_investigation_is_not_emailed_about_it(
    waiting, make_user, settings, mailoutbox
):
    """A grant of a tool is not a view of every investigation: the mail names the target and the alert."""
    _, request = waiting
    make_user("on-call", "analyst", email="oncall@soc.example")
    contractor = make_user("contractor", email="contractor@elsewhere.example")  # no role: sees granted ones only
    assign_perm("investigations.approve_tool", contractor, ToolPolicy.objects.get(tool="isolate_host"))
    assert not ActionRequest.objects.visible_to(contractor).filter(pk=request.pk).exists()
    overdue(request, settings)
    deliveries.sweep()
    (mail,) = mailoutbox
    assert mail.to == ["oncall@soc.example"]


def a_comment_request(investigation, body: str) -> ActionRequest:
    """An add_comment request as the agent makes it: its target holds the comment's text."""
    _, tool = find_tool("add_comment")
    arguments = parse_arguments(tool.arguments, {"ticket_id": "4471", "body": body})
    key = idempotency.write_key(tool, arguments, investigation.alert.trigger)
    return ActionRequest.objects.create(
        investigation=investigation,
        tool_use_id="toolu_comment0001",
        tool="add_comment",
        server="ticketing",
        arguments=arguments.model_dump(mode="json"),
        target=key.target,
        idempotency_key=key.key,
        expires_at=timezone.now() + timedelta(hours=1),
    )


def test_a_comment_of_several_lines_is_emailed_under_a_one_line_subject(
    make_investigation, make_user, settings, mailoutbox
):
    """A mail header holds no newline (Django refuses it): the comment's lines are joined in the subject."""
    make_user("on-call", "analyst", email="oncall@soc.example")
    request = a_comment_request(make_investigation(), "Findings:\n- beacon to 203.0.113.7\n- payroll.xlsx read")
    assert "\n" in request.target
    overdue(request, settings)
    deliveries.sweep()
    (mail,) = mailoutbox
    assert mail.subject.startswith("[Gatehouse] add_comment on ") and "findings: - beacon" in mail.subject
    assert ChannelDelivery.objects.get(request=request).state == "sent"


class FaultyChannel(OutboundChannel):
    """A channel with a fault of its own (not a DeliveryFailed): as a bug in a channel would be."""

    name = "faulty"
    wants = frozenset({Kind.OVERDUE})

    def notify(self, change):
        raise ValueError(f"a bug, quoting {change.request.target}")


def test_a_channel_failing_in_its_own_code_fails_that_attempt_only_and_the_sweep_goes_on(
    waiting, make_user, settings, monkeypatch, mailoutbox
):
    """Counted and backed off like a refused send (so given up in the end), named by the exception's type
    only; the other channels' deliveries of the same sweep are still sent."""
    monkeypatch.setitem(OUTBOUND, FaultyChannel.name, FaultyChannel)
    settings.APPROVAL_CHANNELS = ["faulty", "email"]
    _, request = waiting
    make_user("on-call", "analyst", email="oncall@soc.example")
    overdue(request, settings)
    sent = deliveries.sweep()
    faulty = ChannelDelivery.objects.get(request=request, channel="faulty")
    assert (faulty.state, faulty.attempts, faulty.last_error) == ("failed", 1, "ValueError in the channel")
    assert faulty.next_attempt_at > timezone.now()
    assert sent == [ChannelDelivery.objects.get(request=request, channel="email").pk] and len(mailoutbox) == 1


def test_a_mail_server_refusing_leaves_the_request_untold_logged_once_and_the_next_sweep_sends_it(
    waiting, make_user, settings, smtp, caplog
):
    _, request = waiting
    make_user("on-call", "analyst", email="oncall@soc.example")
    overdue(request, settings)
    with caplog.at_level(logging.WARNING, logger=deliveries.__name__):
        assert deliveries.sweep() == []
    assert smtp.refused == 1 and smtp.received == []
    delivery = ChannelDelivery.objects.get(request=request, channel="email")
    assert (delivery.state, delivery.attempts, delivery.sent_at) == ("failed", 1, None)
    assert delivery.last_error == "SMTPDataError 554"
    assert delivery.next_attempt_at > timezone.now() + timedelta(seconds=20)  # backed off
    (line,) = [record.getMessage() for record in caplog.records if record.name == deliveries.__name__]
    assert line == (
        f"approval channel email: overdue notice of action request {request.pk} not sent "
        "(SMTPDataError 554), attempt 1; retrying in 30 s"
    )

    assert deliveries.sweep() == [] and smtp.refused == 1  # within the backoff: not tried again
    smtp.refusing = False  # the mail server is back, and the backoff is over
    later(delivery)
    assert deliveries.sweep() == [delivery.pk]
    ((recipients, body),) = smtp.received
    assert recipients == ["oncall@soc.example"] and f"/approvals/{request.pk}/" in body
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts, delivery.last_error, delivery.next_attempt_at) == ("sent", 2, "", None)
    assert deliveries.sweep() == [] and len(smtp.received) == 1  # told once


def test_an_overdue_notice_not_sent_before_the_decision_is_dropped_not_sent_late(waiting, analyst, settings, smtp):
    _, request = waiting
    analyst.email = "ana@soc.example"
    analyst.save()
    overdue(request, settings)
    deliveries.sweep()
    approvals.reject(request.pk, analyst, "not now")
    smtp.refusing = False
    delivery = ChannelDelivery.objects.get(request=request, channel="email")
    later(delivery)
    assert deliveries.sweep() == []
    delivery.refresh_from_db()
    assert delivery.state == "dropped" and smtp.received == []


# -- told once committed -------------------------------------------------------------------------
def ask(investigation: Investigation, tool_use_id: str) -> ActionRequest:
    """The request the agent makes to isolate the phished host, as the worker holding the investigation."""
    owner = services.claim(investigation.pk) or Investigation.objects.get(pk=investigation.pk).lease_owner
    use = {"id": tool_use_id, "name": "isolate_host", "input": {"host": "ws-fin-07", "reason": "Beaconing."}}
    return approvals.request_action(investigation, use, owner=owner, gateway=Gateway())


def test_a_new_request_is_told_to_the_webhook_once_committed_and_a_rolled_back_one_never(received, analyst, webhook):
    _, investigation = received("LAB-SIEM-1001")

    class Undone(Exception):
        pass

    def ask_then_roll_back():
        with transaction.atomic():
            ask(investigation, "toolu_rolledback1")
            raise Undone

    with pytest.raises(Undone):
        ask_then_roll_back()
    assert not ActionRequest.objects.exists() and not ChannelDelivery.objects.exists()

    request = ask(investigation, "toolu_committed01")
    (delivery,) = ChannelDelivery.objects.filter(request=request)
    assert (delivery.channel, delivery.kind, delivery.state) == ("webhook", "waiting", "pending")
    assert deliveries.deliver([delivery.pk]) == [delivery.pk]  # what the deliver_notifications task does
    ((headers, body),) = webhook.posts
    assert headers["x-gatehouse-signature"] == sign(SECRET, headers["x-gatehouse-timestamp"], body)
    told = json.loads(body)
    assert (told["kind"], told["request"]["id"], told["request"]["state"]) == ("waiting", request.pk, "pending")
    assert deliveries.deliver([delivery.pk]) == [] and len(webhook.posts) == 1

    approvals.reject(request.pk, analyst, "not now")  # its decision is told too
    decided = ChannelDelivery.objects.get(request=request, kind="decided")
    assert deliveries.deliver([decided.pk]) == [decided.pk]
    assert json.loads(webhook.posts[-1][1])["request"]["state"] == "rejected"


@contextmanager
def serving(*receivers: Receiver):
    """The receivers answering on their threads until the block ends."""
    for receiver in receivers:
        threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        yield
    finally:
        for receiver in receivers:
            if getattr(receiver, "stop", None) is not None:
                receiver.stop.set()
            receiver.shutdown()
            receiver.server_close()


def webhook_to(settings, url: str) -> None:
    """The webhook channel alone, posting to `url`."""
    settings.APPROVAL_CHANNELS = ["webhook"]
    settings.APPROVAL_WEBHOOK_SECRET = SECRET
    settings.APPROVAL_WEBHOOK_URL = url


def tried(request: ActionRequest, kind: Kind = Kind.WAITING) -> tuple[list[int], ChannelDelivery]:
    """One webhook delivery of `request` recorded and tried once: what was sent, and the delivery after."""
    (delivery_id,) = deliveries._record(request.pk, kind, ["webhook"])
    sent = deliveries.deliver([delivery_id])
    return sent, ChannelDelivery.objects.get(pk=delivery_id)


def test_a_receiver_that_redirects_is_not_followed_and_the_delivery_fails(waiting, settings):
    """urllib would follow a 302 after the POST as a GET, with the signature headers, to any address."""
    elsewhere = Receiver()  # stands in for a metadata service or an admin port on loopback
    elsewhere.gets = []

    class Seen(ReceiverHandler):
        def do_GET(self):
            self.server.gets.append(self.path)
            self.send_response(200)
            self.end_headers()

    elsewhere.RequestHandlerClass = Seen

    class Bouncer(ReceiverHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.1:{elsewhere.server_address[1]}/latest/meta-data/")
            self.send_header("Content-Length", "0")
            self.end_headers()

    bouncer = Receiver()
    bouncer.RequestHandlerClass = Bouncer
    with serving(elsewhere, bouncer):
        webhook_to(settings, bouncer.url)
        sent, delivery = tried(waiting[1])
        assert sent == [] and (delivery.state, delivery.last_error) == ("failed", "HTTP 302")
        assert elsewhere.gets == []


def test_an_https_receiver_is_posted_to_when_its_certificate_is_trusted_and_never_when_it_is_not(
    waiting, settings, monkeypatch
):
    """The send's TLS: certificates and the host name are checked (a CA of the test's own, trustme's)."""
    ca = trustme.CA()
    receiver = Receiver()
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(tls)
    receiver.socket = tls.wrap_socket(receiver.socket, server_side=True)
    with serving(receiver):
        webhook_to(settings, receiver.url.replace("http://", "https://"))
        sent, untrusted = tried(waiting[1])
        assert sent == [] and untrusted.state == "failed" and receiver.posts == []
        with ca.cert_pem.tempfile() as ca_file:
            monkeypatch.setenv("SSL_CERT_FILE", ca_file)  # what ssl.create_default_context() trusts
            sent, trusted = tried(waiting[1], Kind.DECIDED)
        assert sent == [trusted.pk]
        ((_, body),) = receiver.posts
        assert json.loads(body)["delivery"] == trusted.pk


class Trickler(ReceiverHandler):
    """Answers a byte at a time, never silent long enough for a socket timeout, until told to stop."""

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.server.posts.append(({}, b""))
        self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        ends = time.monotonic() + 10  # then the answer ends, and a send without a deadline succeeds
        while not self.server.stop.wait(0.2) and time.monotonic() < ends:
            try:
                self.wfile.write(b"a")
                self.wfile.flush()
            except OSError:
                return  # the sender hung up
        self.wfile.write(b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


def test_a_receiver_answering_a_byte_at_a_time_is_cut_off_at_the_sends_deadline(waiting, settings, monkeypatch):
    """A socket timeout bounds each read: a trickled answer held the send past the delivery's claim."""
    from investigations.approvals.channels import webhook

    assert webhook.SEND_DEADLINE_S < deliveries.CLAIM_S
    monkeypatch.setattr(webhook, "SEND_DEADLINE_S", 1)
    slow = Receiver()
    slow.RequestHandlerClass, slow.stop = Trickler, threading.Event()
    with serving(slow):
        webhook_to(settings, slow.url)
        sent, delivery = tried(waiting[1])
        assert sent == [] and (delivery.state, delivery.last_error) == ("failed", "no answer within 1 s")
        assert len(slow.posts) == 1


def test_an_attempt_that_outlived_its_claim_records_nothing_and_both_carry_the_delivery_id(
    waiting, webhook, monkeypatch
):
    """The first send's answer is lost while the next sweep sends the delivery again: its late failure must
    not overwrite the second's success, and the receiver can tell the two posts are one delivery."""
    from investigations.approvals.channels.webhook import WebhookChannel

    _, request = waiting
    (delivery_id,) = deliveries._record(request.pk, Kind.WAITING, ["webhook"])
    held, release = threading.Event(), threading.Event()
    send = WebhookChannel.notify

    def notify(self, change):
        send(self, change)
        if not held.is_set():  # the first attempt: sent, then its answer is lost past its claim
            held.set()
            assert release.wait(WAIT_S)
            raise DeliveryFailed("no answer within 30 s")

    monkeypatch.setattr(WebhookChannel, "notify", notify)

    def first():
        try:
            deliveries.deliver([delivery_id])
        finally:
            connection.close()

    sender = threading.Thread(target=first)
    sender.start()
    try:
        assert held.wait(WAIT_S)
        later(ChannelDelivery.objects.get(pk=delivery_id))  # the first claim's lease ends
        assert deliveries.sweep() == [delivery_id]
    finally:
        release.set()
        sender.join(WAIT_S)
    assert not sender.is_alive()
    delivery = ChannelDelivery.objects.get(pk=delivery_id)
    assert (delivery.state, delivery.attempts, delivery.last_error) == ("sent", 1, "")
    assert len(webhook.posts) == 2
    for headers, body in webhook.posts:
        assert headers["x-gatehouse-delivery"] == str(delivery_id)
        assert json.loads(body)["delivery"] == delivery_id


# -- the signed webhook's callbacks ----------------------------------------------------------------
def call(decision: dict, *, secret: str = SECRET, at: float | None = None, signature: str | None = None):
    body = json.dumps(decision).encode()
    headers = signed_headers(secret, body, now=at)
    if signature is not None:
        headers["X-Gatehouse-Signature"] = signature
    return Client().post(CALLBACK, body, content_type="application/json", headers=headers)


def decisions_of(request: ActionRequest) -> list[AuditRecord]:
    return list(
        AuditRecord.objects.filter(kind=AuditRecord.Kind.DECISION, extra__action_request=request.pk).exclude(
            outcome="pending_approval"
        )
    )


def test_a_signed_approval_from_a_linked_approver_goes_through_the_gate_and_the_audit_names_the_channel(
    waiting, analyst, webhook, caplog
):
    _, request = waiting
    response = call({"user": "chat-ana", "request": request.pk, "decision": "approve", "reason": "seen in chat"})
    assert response.status_code == 200, response.content
    request.refresh_from_db()
    assert request.state == "approved"
    assert ActionApproval.objects.get(request=request).user == analyst
    (record,) = decisions_of(request)
    assert (record.outcome, record.actor, record.source, record.extra["channel"]) == (
        "approved",
        "user:ana",
        "channel:webhook",
        "webhook",
    )
    # The secret is nowhere it could leak.
    assert SECRET not in response.content.decode() + caplog.text
    assert not any(SECRET in json.dumps([r.arguments, r.extra, r.text]) for r in AuditRecord.objects.all())


def test_a_signed_rejection_is_the_gates_rejection_with_the_reason(waiting, analyst, webhook):
    _, request = waiting
    response = call({"user": "chat-ana", "request": request.pk, "decision": "reject", "reason": "month-end close"})
    assert response.status_code == 200, response.content
    request.refresh_from_db()
    assert request.state == "rejected" and request.result["analyst_reason"] == "month-end close"
    assert decisions_of(request)[0].source == "channel:webhook"


@pytest.mark.parametrize(
    "how, status",
    [
        ("bad signature", 401),
        ("signed with another secret", 401),
        ("stale timestamp", 401),
        ("from the future", 401),
        ("unsigned", 401),
        ("unlinked platform user", 403),
        ("linked to no Gatehouse user", 403),
        ("linked user may not approve", 403),
    ],
)
def test_a_callback_that_is_not_a_linked_approvers_is_refused_and_nothing_is_decided(
    waiting, analyst, manager, webhook, caplog, how, status
):
    _, request = waiting
    decision = {"user": "chat-ana", "request": request.pk, "decision": "approve"}
    if how == "bad signature":
        response = call(decision, signature="v0=" + "0" * 64)
    elif how == "signed with another secret":
        response = call(decision, secret=SECRET[::-1])
    elif how == "stale timestamp":
        response = call(decision, at=time.time() - 301)
    elif how == "from the future":
        # Twice the window: a second's margin was used up by a busy machine between signing and checking.
        response = call(decision, at=time.time() + 2 * settings.APPROVAL_WEBHOOK_MAX_AGE_S)
    elif how == "unsigned":
        response = Client().post(CALLBACK, json.dumps(decision), content_type="application/json")
    elif how == "unlinked platform user":
        response = call(decision | {"user": "chat-stranger"})
    elif how == "linked to no Gatehouse user":
        response = call(decision | {"user": "chat-ghost"})
    else:
        response = call(decision | {"user": "chat-max"})  # a manager: sees the request, may not approve it
    assert response.status_code == status, response.content
    request.refresh_from_db()
    assert request.state == "pending" and not request.approvals.exists()
    refusals = decisions_of(request)
    if how == "linked user may not approve":  # the gate recorded its denial, naming the channel
        assert [(r.outcome, r.actor, r.source) for r in refusals] == [("denied", "user:max", "channel:webhook")]
    else:
        assert refusals == []
    assert SECRET not in response.content.decode() + caplog.text


def test_a_channel_not_enabled_answers_404(waiting, analyst, settings):
    settings.APPROVAL_WEBHOOK_SECRET = SECRET  # configured, but not enabled
    _, request = waiting
    response = call({"user": "chat-ana", "request": request.pk, "decision": "approve"})
    assert response.status_code == 404
    request.refresh_from_db()
    assert request.state == "pending"
