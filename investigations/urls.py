from django.urls import path

from investigations import views, views_approvals, views_audit

app_name = "investigations"

urlpatterns: list = [
    path("investigations/", views.investigation_list, name="list"),
    path("investigations/<int:pk>/", views.investigation_detail, name="detail"),
    path("alerts/new/", views.new_alert, name="new_alert"),
    path("approvals/", views_approvals.approval_queue, name="approvals"),
    path("approvals/<int:pk>/", views_approvals.action_detail, name="action"),
    path("approvals/<int:pk>/approve", views_approvals.approve, name="approve"),
    path("approvals/<int:pk>/reject", views_approvals.reject, name="reject"),
    path("audit/", views_audit.audit_list, name="audit"),
    path("audit/records/<int:seq>/", views_audit.audit_record, name="audit_record"),
    path("audit/investigations/<int:pk>/", views_audit.timeline, name="audit_timeline"),
    path("audit/export", views_audit.export, name="audit_export"),
    path("audit/digest", views_audit.digest, name="audit_digest"),
]
