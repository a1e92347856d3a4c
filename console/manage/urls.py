from django.urls import path

from console.manage import views as views_manage

app_name = "manage"

urlpatterns = [
    path("", views_manage.index, name="index"),
    path("budgets", views_manage.budgets, name="budgets"),
    path("servers/register", views_manage.register, name="register"),
    path("servers/<str:name>/", views_manage.server, name="server"),
    path("servers/<str:name>/credential", views_manage.set_credential, name="set_credential"),
    path("servers/<str:name>/credential/revoke", views_manage.revoke_credential, name="revoke_credential"),
    path("servers/<str:name>/check", views_manage.check, name="check"),
    path("servers/<str:name>/discover", views_manage.discover, name="discover"),
    path("tools/<str:name>/", views_manage.tool, name="tool"),
    path("tools/<str:name>/accept", views_manage.accept_change, name="accept_change"),
    path("permissions/", views_manage.permissions, name="permissions"),
    path("permissions/grant", views_manage.grant, name="grant"),
    path("permissions/revoke", views_manage.revoke, name="revoke"),
    path("people/", views_manage.people, name="people"),
    path("people/grant", views_manage.grant_role, name="grant_role"),
    path("people/revoke", views_manage.revoke_role, name="revoke_role"),
]
