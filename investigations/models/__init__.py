"""The investigations app's models, one module per room; all under the one app label
`investigations`, so moving them here moved no table."""

from investigations.models.approvals import (
    ActionApproval,
    ActionRequest,
    ActionTransition,
    ChannelDelivery,
    ToolPolicy,
)
from investigations.models.audit import (
    AuditHead,
    AuditQuerySet,
    AuditRecord,
    AuditRefused,
)
from investigations.models.intake import Alert, Integration
from investigations.models.runs import Budgets, Event, Investigation
from investigations.models.tokens import ApiToken

__all__ = [
    "ActionApproval",
    "ActionRequest",
    "ActionTransition",
    "Alert",
    "ApiToken",
    "AuditHead",
    "AuditQuerySet",
    "AuditRecord",
    "AuditRefused",
    "Budgets",
    "ChannelDelivery",
    "Event",
    "Integration",
    "Investigation",
    "ToolPolicy",
]
