from django.apps import AppConfig
from django.db.models.signals import post_migrate


class ConsoleConfig(AppConfig):
    name = "console"
    verbose_name = "Gatehouse console"

    def ready(self):
        from django.contrib.auth import signals as auth_signals

        from console import database, signals, signin
        from core.roles import grant_role_permissions

        auth_signals.user_logged_in.connect(signin.logged_in, dispatch_uid="gatehouse-audit-logged-in")
        auth_signals.user_logged_out.connect(signin.logged_out, dispatch_uid="gatehouse-audit-logged-out")
        auth_signals.user_login_failed.connect(signin.login_failed, dispatch_uid="gatehouse-audit-login-failed")
        signals.connect()  # a change of anyone's access reaches their open sockets

        # Permissions exist only after every app has migrated, so roles get theirs here.
        post_migrate.connect(grant_role_permissions, dispatch_uid="gatehouse-role-permissions")
        post_migrate.connect(_grant_default_approvals, dispatch_uid="gatehouse-default-approvals")
        post_migrate.connect(database.after_migrate, dispatch_uid="gatehouse-runtime-role")


def _grant_default_approvals(app_config, **kwargs):
    """post_migrate receiver, after the roles: every catalog server and tool has its row, every write
    tool a policy, approved by analysts by default."""
    if app_config.label != "console":
        return
    from investigations.approvals.services import ensure_policies
    from toolserver.config import ensure_catalog

    ensure_catalog()
    ensure_policies()
