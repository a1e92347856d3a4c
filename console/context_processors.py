from functools import cached_property

from django.utils.functional import SimpleLazyObject

from console.navigation import items_for
from core.roles import roles_of


def navigation(request):
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"pending_approvals": 0}
    from investigations.approvals.views import pending_count

    items = items_for(user)
    return {
        "nav_items": items,
        "user_roles": sorted(roles_of(user)),
        # Counted (one query) only when a page shows it: the badge, the title, the live count's script.
        "pending_approvals": SimpleLazyObject(lambda: pending_count(user)),
        "approvals_live": any(item["badge"] == "pending_approvals" for item in items),
        "approvable_tools": ApprovableTools(user),
    }


class ApprovableTools:
    """The write tools `user` may approve (`actions.approvable_tools`), worked out only if a page asks.

    Pages show a decision's buttons disabled for the others; the decision itself checks again.
    """

    def __init__(self, user):
        self.user = user

    @cached_property
    def tools(self) -> list[str]:
        from investigations.approvals import services as actions

        return actions.approvable_tools(self.user)

    def __contains__(self, tool) -> bool:
        return tool in self.tools

    def __iter__(self):
        return iter(self.tools)
