"""The navigation bar: which page each role reaches. One table, filtered per user."""

from dataclasses import dataclass

from django.conf import settings
from django.urls import reverse

from core.roles import ADMIN, ANALYST, MANAGER, roles_of


@dataclass(frozen=True)
class NavItem:
    label: str
    url_name: str
    roles: frozenset[str]
    badge: str = ""  # a count shown beside the label: the name of the context variable holding it


NAVIGATION = [
    NavItem("Overview", "home", frozenset({ANALYST, MANAGER, ADMIN})),
    NavItem("Investigations", "investigations:list", frozenset({ANALYST, MANAGER})),
    NavItem("Approvals", "investigations:approvals", frozenset({ANALYST, MANAGER}), badge="pending_approvals"),
    NavItem("New alert", "investigations:new_alert", frozenset({ANALYST})),
    NavItem("Audit trail", "investigations:audit", frozenset({ANALYST, MANAGER, ADMIN})),
    NavItem("Tool servers", "manage:index", frozenset({ADMIN})),
    NavItem("People", "manage:people", frozenset({ADMIN})),
    NavItem("Administration", "admin:index", frozenset({ADMIN})),
    NavItem("Account", "account", frozenset({ANALYST, MANAGER, ADMIN})),
]
if settings.LAB_ENABLED:  # the lab's URLs exist only then (console/urls.py)
    NAVIGATION.insert(-1, NavItem("Lab", "lab:admin", frozenset({ADMIN})))


def items_for(user) -> list[dict]:
    roles = roles_of(user)
    return [
        {"label": item.label, "url": reverse(item.url_name), "url_name": item.url_name, "badge": item.badge}
        for item in NAVIGATION
        if item.roles & roles
    ]
