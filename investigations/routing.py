from django.urls import path

from investigations.approvals.consumers import ApprovalsConsumer
from investigations.runs.consumers import (
    InvestigationConsumer,
    InvestigationListConsumer,
)

websocket_urlpatterns = [
    path("ws/investigations/", InvestigationListConsumer.as_asgi()),
    path("ws/investigations/<int:pk>/", InvestigationConsumer.as_asgi()),
    path("ws/approvals/", ApprovalsConsumer.as_asgi()),
]
