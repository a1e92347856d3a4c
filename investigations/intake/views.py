"""The alert form: an analyst reports an alert by hand, through the same intake as the API."""

from django.contrib.auth.decorators import login_required, permission_required
from django.shortcuts import redirect, render

from investigations.intake.forms import AlertForm
from investigations.intake.services import receive_alert


@login_required
@permission_required("investigations.add_alert", raise_exception=True)
def new_alert(request):
    form = AlertForm(request.POST if request.method == "POST" else None)
    if form.is_valid():
        received = receive_alert(form.alert_in, submitted_by=request.user)
        return redirect("investigations:detail", pk=received.investigation.pk)
    return render(request, "investigations/new_alert.html", {"form": form})
