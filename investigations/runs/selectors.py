"""What the investigation pages and sockets read. Who may see an investigation is the model's rule
(`Investigation.objects.visible_to`), asked before anything here is read."""

from functools import lru_cache

from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.models import Count, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce

from investigations.models import Alert, Event, Investigation
from investigations.runs.forms import OBSERVED


def listing(user, filters: dict | None = None):
    """The investigations `user` may see, newest first, under the cleaned data of
    `forms.InvestigationFilters`: what the list page and `GET /api/investigations` show."""
    investigations = (
        Investigation.objects.visible_to(user)
        .select_related("alert")
        .defer("messages", "tool_results", "alert__details")  # conversations and payloads: not on a list
        .annotate(related_count=RELATED_COUNT)
        .order_by("-created_at", "-id")
    )
    return filtered(investigations, filters or {})


# A storm's alerts joined to each investigation (grouping), counted for the rows of a page only: a join
# and GROUP BY would group every visible investigation before the page's 50 are taken, and the count.
RELATED_COUNT = Coalesce(
    Subquery(
        Alert.objects.filter(joined=OuterRef("pk")).order_by().values("joined").annotate(n=Count("pk")).values("n")
    ),
    0,
)


def filtered(investigations, filters: dict):
    """`investigations` narrowed by each filter given; they combine (and)."""
    exact = {"status": "status", "verdict": "verdict", "severity": "alert__severity", "source": "alert__source"}
    investigations = investigations.filter(**{exact[name]: filters[name] for name in exact if filters.get(name)})
    # Host and user names differ in case from sender to sender; their indexes are on UPPER(), as iexact compares.
    if filters.get("host"):
        investigations = investigations.filter(alert__host__iexact=filters["host"])
    if filters.get("user"):
        investigations = investigations.filter(alert__account__iexact=filters["user"])
    if filters.get("q"):
        text = filters["q"]
        investigations = investigations.filter(
            Q(alert__title__icontains=text)
            | Q(alert__host__icontains=text)
            | Q(alert__account__icontains=text)
            | Q(alert__external_id__icontains=text)
        )
    moment = "alert__observed_at" if filters.get("time") == OBSERVED else "created_at"
    if filters.get("since"):
        investigations = investigations.filter(**{f"{moment}__gte": filters["since"]})
    if filters.get("until"):
        investigations = investigations.filter(**{f"{moment}__lte": filters["until"]})
    return investigations


def granted_viewer_ids(investigation_id: int) -> list[int]:
    """The active users who may view this investigation through an object permission of their own or
    of a team (whoever also sees all is among them if granted; live_messages sends them one copy).

    Asked at every status change of every investigation, so `grantees`' query is compiled once a process
    (for the content type it names, which a test database's flush renumbers), then only run: a call took
    2.6 ms of CPU building it each time, and takes 0.12 ms now."""
    sql, params = _grantees_statement(ContentType.objects.get_for_model(Investigation).pk)
    key = str(investigation_id)  # as guardian writes object_pk
    with connection.cursor() as cursor:
        cursor.execute(sql, [key if param == _THE_KEY else param for param in params])
        return [pk for (pk,) in cursor.fetchall()]


_THE_KEY = "gatehouse:the-investigation's-key"  # where the investigation's key goes in the compiled statement


@lru_cache(maxsize=4)
def _grantees_statement(content_type_id: int) -> tuple[str, tuple]:
    """`content_type_id` is the cache's key only: the statement names the content type grantees looks up."""
    return Investigation.objects.grantees(_THE_KEY).values_list("pk", flat=True).query.sql_with_params()


def events_after(investigation_id: int, seq: int) -> list[dict]:
    return [event.as_message() for event in Event.objects.filter(investigation_id=investigation_id, seq__gt=seq)]
