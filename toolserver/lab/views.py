"""The lab's pages: the admin page (faults, write counts, keys, latest writes) and a ticket page."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import redirect, render

from core.roles import ADMIN, ROLES, has_role
from toolserver.lab import estate, faults, selectors
from toolserver.lab.forms import FaultForm
from toolserver.lab.models import LabWrite


@login_required
def admin_page(request):
    if not has_role(request.user, ADMIN):
        raise PermissionDenied
    current = faults.current()
    forms = {
        name: FaultForm(
            auto_id=False,
            initial={
                "backend": name,
                "mode": fault.mode,
                "delay_ms": fault.delay_ms,
                "retry_after_s": fault.retry_after_s,
                "remaining": fault.remaining,
            },
        )
        for name, fault in current.items()
    }
    status = 200
    if request.method == "POST":
        if request.POST.get("clear_all"):
            faults.clear()
            messages.success(request, "Every backend is healthy again.")
            return redirect("lab:admin")
        form = FaultForm(request.POST, auto_id=False)
        if form.is_valid():
            fault = form.save()
            messages.success(
                request, f"{fault.backend}: {fault.mode}." if fault.mode != "none" else f"{fault.backend}: cleared."
            )
            return redirect("lab:admin")
        if form.data.get("backend") in forms:
            forms[form.data["backend"]] = form  # show the errors beside the backend they belong to
        else:
            messages.error(request, "Unknown backend.")
        status = 400
    context = {
        "backends": [{"name": name, "fault": current[name], "form": forms.get(name)} for name in faults.BACKENDS],
        "outcomes": LabWrite.Outcome.values,
        "write_counts": selectors.write_counts(),
        "keys": selectors.keys(),
        "latest_writes": selectors.latest_writes(20),
        "seeded_at": estate.seeded_at(),
    }
    return render(request, "lab/admin.html", context, status=status)


@login_required
def ticket_page(request, number: int):
    if not has_role(request.user, *ROLES):
        raise PermissionDenied
    ticket = selectors.ticket(number)
    if ticket is None:
        raise Http404("no such ticket")
    return render(request, "lab/ticket.html", {"ticket": ticket})
