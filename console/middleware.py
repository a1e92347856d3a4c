"""Response headers the console sets on every page and API answer it renders itself.

Static files never reach these: WhiteNoise, earlier in MIDDLEWARE, answers them first.
"""

from django.utils.cache import patch_cache_control
from django.utils.deprecation import MiddlewareMixin


class NoStoreMiddleware(MiddlewareMixin):
    """`Cache-Control: no-store, private` on every answer Django renders.

    Pages and API answers carry a person's data and a CSRF token: no browser history, shared
    proxy or back button may keep a copy after sign-out. Applied to every rendered answer, not
    only signed-in ones, so an API answer authenticated by a bearer token (no session) and a
    page whose user changed mid-request are covered alike. Directives a view set (never_cache)
    are kept.
    """

    def process_response(self, request, response):
        patch_cache_control(response, no_store=True, private=True)
        return response
