from django.urls import path

from investigations import views

app_name = "investigations"

urlpatterns: list = [
    path("investigations/", views.investigation_list, name="list"),
    path("investigations/<int:pk>/", views.investigation_detail, name="detail"),
    path("alerts/new/", views.new_alert, name="new_alert"),
]
