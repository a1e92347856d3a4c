from django.apps import AppConfig


class ToolserverConfig(AppConfig):
    name = "toolserver"
    verbose_name = "Tool servers"
