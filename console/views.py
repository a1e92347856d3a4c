from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from console import health


@login_required
def home(request):
    return render(request, "console/home.html")


@never_cache
@require_GET
async def healthz(request):
    """200 when database, broker and channel layer all answer; 503 naming those that do not."""
    checks = await health.check_all()
    down = [name for name in ("database", "broker", "channel_layer") if checks[name] != "ok"]
    body = {"status": "down" if down else "ok", "down": down, **checks}
    return JsonResponse(body, status=503 if down else 200)
