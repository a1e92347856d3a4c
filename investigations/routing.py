from django.urls import path

from investigations import consumers

websocket_urlpatterns = [
    path("ws/investigations/", consumers.InvestigationListConsumer.as_asgi()),
    path("ws/investigations/<int:pk>/", consumers.InvestigationConsumer.as_asgi()),
    path("ws/approvals/", consumers.ApprovalsConsumer.as_asgi()),
]
