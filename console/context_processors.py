from console.navigation import items_for
from console.roles import roles_of


def navigation(request):
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {"nav_items": items_for(user), "user_roles": sorted(roles_of(user))}
