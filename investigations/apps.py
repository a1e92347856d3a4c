from django.apps import AppConfig


class InvestigationsConfig(AppConfig):
    name = "investigations"
    verbose_name = "Investigations"

    def ready(self):
        from investigations.approvals.channels.base import outbound
        from investigations.tokens import connect_signals

        connect_signals()
        outbound()  # an unknown name in GATEHOUSE_APPROVAL_CHANNELS stops the start, not a decision
