from django.apps import AppConfig
from django.db.models.signals import post_migrate


class ConsoleConfig(AppConfig):
    name = "console"
    verbose_name = "Gatehouse console"

    def ready(self):
        from console import signals
        from console.roles import grant_default_approvals, grant_role_permissions

        signals.connect()  # a change of anyone's access reaches their open sockets

        # Permissions exist only after every app has migrated, so roles get theirs here.
        post_migrate.connect(grant_role_permissions, dispatch_uid="gatehouse-role-permissions")
        post_migrate.connect(grant_default_approvals, dispatch_uid="gatehouse-default-approvals")
