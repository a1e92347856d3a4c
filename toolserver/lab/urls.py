from django.urls import path, re_path

from toolserver.lab import api, views

app_name = "lab"
urlpatterns = [
    path("", views.admin_page, name="admin"),
    path("tickets/<int:number>", views.ticket_page, name="ticket"),
    path("api/health", api.health, name="api-health"),
    path("api/siem/logins", api.siem_logins, name="api-siem-logins"),
    path("api/siem/events", api.siem_events, name="api-siem-events"),
    path("api/edr/hosts/<str:host_ref>", api.edr_host, name="api-edr-host"),
    path("api/edr/hosts/<str:host_ref>/processes", api.edr_processes, name="api-edr-processes"),
    path("api/edr/hosts/<str:host_ref>/connections", api.edr_connections, name="api-edr-connections"),
    path("api/edr/hosts/<str:host_ref>/isolation", api.edr_isolation, name="api-edr-isolation"),
    path("api/edr/hosts/<str:host_ref>/isolate", api.edr_isolate, name="api-edr-isolate"),
    path("api/edr/hosts/<str:host_ref>/release", api.edr_release, name="api-edr-release"),
    path("api/identity/users/<str:username>", api.identity_user, name="api-identity-user"),
    path("api/identity/users/<str:username>/disable", api.identity_disable, name="api-identity-disable"),
    path("api/identity/users/<str:username>/enable", api.identity_enable, name="api-identity-enable"),
    path("api/tickets", api.tickets_open, name="api-tickets"),
    path("api/tickets/search", api.tickets_search, name="api-tickets-search"),
    path("api/tickets/<str:ticket_id>/comments", api.tickets_comment, name="api-ticket-comments"),
    path("api/intel/lookup", api.intel_lookup, name="api-intel-lookup"),
    re_path(r"^api/(?P<rest>.*)$", api.not_found),  # anything else under api/ is a JSON 404
]
