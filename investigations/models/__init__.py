"""The investigations app's models, one module per room; all under the one app label
`investigations`, so moving them here moved no table.

Who may see what is each model's queryset method `visible_to(user)`: `Investigation.objects`,
`ActionRequest.objects` and `AuditRecord.objects` (architecture rule 12).
"""

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
    may_read_trail,
    reads_whole_trail,
    trails_visible_to,
)
from investigations.models.intake import Alert, Integration
from investigations.models.runs import (
    Budgets,
    Event,
    Investigation,
    sees_any_investigation,
    sees_every_investigation,
)
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
    "may_read_trail",
    "reads_whole_trail",
    "sees_any_investigation",
    "sees_every_investigation",
    "trails_visible_to",
]
