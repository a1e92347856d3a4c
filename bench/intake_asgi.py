"""console.asgi's application, plus POST /bench/bare: the baseline of bench/intake.py.

The bare view is a plain sync Django view that returns 201: served by the same Django handler,
through the same middleware (security headers, sessions, CSP, logging), run in the same thread
as POST /api/alerts is, but with no token lookup, rate limit, parsing, database or grouping.

    uvicorn bench.intake_asgi:application   (from the repository root)
"""

from django.core.handlers.asgi import ASGIHandler
from django.http import HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from console.asgi import application as console_application


@csrf_exempt
def bare(request):
    request.body  # noqa: B018 - read, as intake reads the alert
    return HttpResponse(status=201)


urlpatterns = [path("bench/bare", bare)]


class BareHandler(ASGIHandler):
    """Django's own ASGI handler, resolving against this module's one URL."""

    async def get_response_async(self, request):
        request.urlconf = __name__
        return await super().get_response_async(request)


bare_application = BareHandler()


async def application(scope, receive, send):
    if scope["type"] == "http" and scope["path"] == "/bench/bare":
        return await bare_application(scope, receive, send)
    return await console_application(scope, receive, send)
