"""The investigation pages. Each view: read the request, check who asks, call one function, render."""

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, render
from django.utils.http import urlencode

from investigations.intake import details as alert_details
from investigations.models import Investigation
from investigations.runs import selectors
from investigations.runs.forms import InvestigationFilters
from investigations.runs.usage import estimated_cost, priced_as

PAGE_SIZE = 50
RELATED_SHOWN = 20  # the latest of an investigation's related alerts its page lists


@login_required
def investigation_list(request):
    form = InvestigationFilters(request.GET)
    if not form.is_valid():  # the form again with its errors, and no list it could not filter
        return render(request, "investigations/list.html", {"form": form, "page": None}, status=400)
    page = Paginator(selectors.listing(request.user, form.cleaned_data), PAGE_SIZE).get_page(request.GET.get("page"))
    context = {"form": form, "page": page, "query": urlencode(form.active()), "filtered": bool(form.active())}
    return render(request, "investigations/list.html", context)


@login_required
def investigation_detail(request, pk: int):
    # One not theirs to see is not found, as an unknown one: the answer says nothing of what exists.
    investigation = get_object_or_404(Investigation.objects.visible_to(request.user).select_related("alert"), pk=pk)
    # Read after the investigation: the events are at least as new as its row, and the page's
    # script brings status and verdict up to date from them.
    events = selectors.events_after(investigation.pk, 0)
    alert = investigation.alert
    usage = investigation.usage
    related = investigation.related_alerts.order_by("-received_at", "-id")
    return render(
        request,
        "investigations/detail.html",
        {
            "investigation": investigation,
            "alert": alert,
            "details_json": alert_details.pretty(alert.details),  # shown autoescaped
            "events": events,
            "related_count": related.count(),
            "related": related[:RELATED_SHOWN],
            "status_labels": dict(Investigation.Status.choices),  # for the script, as the list shows them
            "usage": usage,
            "cache_share": None if usage.cache_read_share is None else f"{usage.cache_read_share:.0%}",
            "cost": estimated_cost(investigation.model, usage),
            "priced_as": priced_as(investigation.model),
        },
    )
