from django.urls import path

from investigations.approvals import views as approvals
from investigations.approvals.channels import views as channels
from investigations.audit import views as audit
from investigations.intake import views as intake
from investigations.runs import views as runs

app_name = "investigations"

urlpatterns: list = [
    path("investigations/", runs.investigation_list, name="list"),
    path("investigations/<int:pk>/", runs.investigation_detail, name="detail"),
    path("alerts/new/", intake.new_alert, name="new_alert"),
    path("approvals/", approvals.approval_queue, name="approvals"),
    path("approvals/<int:pk>/", approvals.action_detail, name="action"),
    path("approvals/<int:pk>/approve", approvals.approve, name="approve"),
    path("approvals/<int:pk>/reject", approvals.reject, name="reject"),
    path("approvals/<int:pk>/confirm", approvals.confirm, name="confirm"),
    path("channels/<slug:channel>/callback", channels.callback, name="channel_callback"),
    path("audit/", audit.audit_list, name="audit"),
    path("audit/records/<int:seq>/", audit.audit_record, name="audit_record"),
    path("audit/investigations/<int:pk>/", audit.timeline, name="audit_timeline"),
    path("audit/export", audit.export, name="audit_export"),
    path("audit/digest", audit.digest, name="audit_digest"),
]
