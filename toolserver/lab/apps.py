from django.apps import AppConfig


class LabConfig(AppConfig):
    name = "toolserver.lab"
    label = "lab"
    verbose_name = "Lab estate"
