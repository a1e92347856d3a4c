from functools import cached_property

from django.utils.functional import SimpleLazyObject

from console.navigation import items_for
from core import transitions
from core.roles import roles_of


def navigation(request):
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"pending_approvals": 0}
    from investigations.approvals.views import pending_count
    from investigations.models import ActionRequest

    items = items_for(user)
    return {
        "nav_items": items,
        "user_roles": sorted(roles_of(user)),
        # Counted (one query) only when a page shows it: the badge, the title, the live count's script.
        "pending_approvals": SimpleLazyObject(lambda: pending_count(user)),
        "approvals_live": any(item["badge"] == "pending_approvals" for item in items),
        "approvable_tools": ApprovableTools(user),
        # The request's state machine (ActionRequest.TRANSITIONS), for the decision cards' script.
        "request_states": transitions.as_page_data(ActionRequest.TRANSITIONS, ActionRequest.INITIAL),
    }


class ApprovableTools:
    """The write tools `user` may approve (`investigations.approvals.services.approvable_tools`), worked out only if a page asks.

    Pages show a decision's buttons disabled for the others; the decision itself checks again.
    """

    def __init__(self, user):
        self.user = user

    @cached_property
    def tools(self) -> list[str]:
        from investigations.approvals.services import approvable_tools

        return approvable_tools(self.user)

    def __contains__(self, tool) -> bool:
        return tool in self.tools

    def __iter__(self):
        return iter(self.tools)
