"""The email channel: the people who may approve a request are emailed once it has waited longer than
APPROVAL_NOTIFY_AFTER_S (`GATEHOUSE_APPROVAL_NOTIFY_MINUTES`; 0: never).

Sent through Django's mail backend with fail_silently off: a mail server that is away or refuses
is a DeliveryFailed (its exception's type name only: an SMTP error's text may quote the login),
so the delivery stays unsent and the sweep tries again.
"""

import smtplib

from django.conf import settings
from django.core.mail import send_mail
from guardian.shortcuts import get_users_with_perms

from investigations.approvals.channels.base import (
    Change,
    DeliveryFailed,
    Kind,
    OutboundChannel,
    Undeliverable,
    register,
)
from investigations.models import ActionRequest, ToolPolicy


@register
class EmailChannel(OutboundChannel):
    name = "email"
    wants = frozenset({Kind.OVERDUE})

    def notify(self, change: Change) -> None:
        request = change.request
        recipients = approver_addresses(request)
        if not recipients:
            raise Undeliverable("no one who may approve it has an email address")
        alert = request.investigation.alert
        try:
            send_mail(
                subject=f"[Gatehouse] {request.tool} on {request.target_text} is waiting for approval",
                message=f"{request.tool} on {request.target_text}, for alert {alert.source}:{alert.external_id}, has waited "
                f"since {request.created_at:%Y-%m-%d %H:%M} UTC and expires at {request.expires_at:%H:%M} UTC.\n\n"
                f"Decide: {settings.CONSOLE_URL}/approvals/{request.pk}/\n",
                from_email=None,
                recipient_list=recipients,
            )
        except (OSError, smtplib.SMTPException) as exc:
            code = getattr(exc, "smtp_code", None)  # a refusal's status, e.g. 554; never its text
            raise DeliveryFailed(f"{type(exc).__name__} {code}" if code else type(exc).__name__) from None


def approver_addresses(request: ActionRequest) -> list[str]:
    """The addresses of the active people who may approve `request`'s tool now (granted directly or by
    a group) and may see the request: a grant of a tool is not a view of every investigation, and the
    mail names the target and the alert."""
    policy = ToolPolicy.objects.filter(tool=request.tool).first()
    if policy is None:
        return []
    approvers = get_users_with_perms(policy, with_group_users=True, only_with_perms_in=["approve_tool"])
    return sorted(
        {
            user.email
            for user in approvers.filter(is_active=True).exclude(email="")
            if ActionRequest.objects.visible_to(user).filter(pk=request.pk).exists()
        }
    )
