"""The HTTP API: one django-ninja instance for every endpoint, its schema at /api/openapi.json."""

from ninja import NinjaAPI

api = NinjaAPI(
    title="Gatehouse API",
    version="1",
    urls_namespace="api",
    docs_url=None,  # the interactive docs load scripts from a CDN; the schema is enough
)
