"""Investigations, the events each one streams, and their budgets; and who may see an investigation."""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import CharField, Q, Value
from django.db.models.functions import Cast, Concat
from django.utils import timezone

from core import text, transitions
from investigations.models.intake import Alert

VIEW = "investigations.view_investigation"
CORRELATION_PREFIX = "investigation-"  # an investigation's audit records carry "investigation-<pk>"


def sees_every_investigation(user) -> bool:
    """Whether `user` sees every investigation: the roles holding the model permission
    `view_investigation` (analysts, managers), and superusers, while signed in and active."""
    return bool(user.is_authenticated and user.is_active and user.has_perm(VIEW))


def sees_any_investigation(user) -> bool:
    """Whether `user` sees some investigation now, or every one (so also before the first)."""
    return sees_every_investigation(user) or Investigation.objects.visible_to(user).exists()


class InvestigationQuerySet(models.QuerySet):
    """Who may see which investigation, written once (architecture rule 12).

    Every page, API call, socket and export asks `visible_to`; the rules of the models that
    belong to an investigation (its action requests, its audit records) are built from
    `visibility` and `granted_to`, never restated.
    """

    @staticmethod
    def visibility(user, *, through: str = "") -> Q:
        """The rule, as a condition on an investigation reached from another model through the
        foreign key `through` ("investigation"), or on the investigation itself.

        Nobody signed out or deactivated sees any; a user who sees every investigation (see
        `sees_every_investigation`) sees all; anyone else sees those granted to them or to a team
        of theirs (`granted_to`). The condition holds no superfluous filter for those who see all.
        """
        pk_in = f"{through}__pk__in" if through else "pk__in"
        if not (user.is_authenticated and user.is_active):
            return Q(**{pk_in: []})  # empty: answered without a query
        if sees_every_investigation(user):
            return Q()
        return Q(**{pk_in: InvestigationQuerySet.granted_ids(user)})

    def visible_to(self, user):
        """The investigations of this queryset that `user` may see."""
        return self.filter(self.visibility(user))

    def granted_to(self, user):
        """Those granted to `user` or a team of theirs (`granted_ids`)."""
        return self.filter(pk__in=self.granted_ids(user))

    @staticmethod
    def granted_ids(user):
        """The ids of the investigations granted to `user` or a team of theirs, as a subquery: the
        django-guardian object permission `view_investigation` on the investigation (a model
        permission or superuser status is not a grant), in guardian's user and group tables.

        Guardian's own `get_objects_for_user` matches `id::varchar IN (object_pk ...)`, which reads
        every investigation; here `object_pk` is cast to the key's type and the two tables are one
        UNION, so the database looks the few granted ids up in the primary key index.
        """
        if user.is_anonymous:
            return Investigation.objects.none().values("pk")
        of_user, of_teams = InvestigationQuerySet._view_grants()
        as_key = Cast("object_pk", output_field=models.BigIntegerField())
        of_user, of_teams = of_user.filter(user=user), of_teams.filter(group__user=user)
        return of_user.annotate(key=as_key).values("key").union(of_teams.annotate(key=as_key).values("key"))

    @staticmethod
    def grantees(investigation_id: int):
        """The active users granted this investigation, themselves or through a team, in id order: the
        other side of `granted_ids`, in one query, at every status change an investigation makes (guardian's
        `get_users_with_perms` needs the row read first, and takes a third more of the worker's CPU)."""
        User = get_user_model()
        of_user, of_teams = InvestigationQuerySet._view_grants()
        key = str(investigation_id)  # as guardian writes object_pk
        members = User.groups.through.objects.filter(group__in=of_teams.filter(object_pk=key).values("group"))
        granted = Q(pk__in=of_user.filter(object_pk=key).values("user")) | Q(pk__in=members.values("user"))
        return User.objects.filter(granted, is_active=True).order_by("pk")

    @staticmethod
    def _view_grants():
        """Guardian's user and group tables, narrowed to grants of `view_investigation`."""
        from guardian.models import GroupObjectPermission, UserObjectPermission  # guardian's models load after ours

        investigation = ContentType.objects.get_for_model(Investigation)
        # The row's own content type too (guardian writes both alike): only investigations' keys are cast.
        the_permission = {
            "content_type": investigation,
            "permission__content_type": investigation,
            "permission__codename": VIEW.split(".")[1],
        }
        of_user = UserObjectPermission.objects.filter(**the_permission)
        return of_user, GroupObjectPermission.objects.filter(**the_permission)

    def correlation_ids(self):
        """Their correlation ids (`Investigation.correlation_id`), as a subquery."""
        as_text = Concat(Value(CORRELATION_PREFIX), Cast("pk", CharField()), output_field=CharField())
        return self.order_by().annotate(correlation=as_text).values("correlation")


class Investigation(models.Model):
    """One agent run over one alert, with its conversation saved after every step.

    `messages` is the conversation as the Messages API takes it; `tool_results` holds the
    results of the last assistant turn's tool calls as each one completes, so a worker that
    dies mid-turn is followed by one that repeats none of them. The lease says which worker
    runs it now: a worker that stops renewing it has died, and another takes over.
    """

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        WAITING = "waiting", "waiting for approval"
        COMPLETED = "completed"
        FAILED = "failed"

    # Where each status may go, the one place it is written: investigations/runs/services.py checks
    # every move against it before touching the row. A worker that died leaves it running under an
    # expired lease, and the next worker claims it running again.
    TRANSITIONS: dict[str, set[str]] = {
        Status.QUEUED: {Status.RUNNING, Status.FAILED},  # failed unstarted: its integration was revoked
        Status.RUNNING: {Status.RUNNING, Status.WAITING, Status.QUEUED, Status.COMPLETED, Status.FAILED},
        Status.WAITING: {Status.QUEUED},
        Status.COMPLETED: set(),
        Status.FAILED: set(),
    }
    INITIAL = Status.QUEUED
    FINAL = transitions.final(TRANSITIONS)

    class Verdict(models.TextChoices):
        MALICIOUS = "malicious"
        BENIGN = "benign"
        INCONCLUSIVE = "inconclusive"

    alert = models.ForeignKey(Alert, on_delete=models.PROTECT, related_name="investigations")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True)
    verdict = models.CharField(max_length=12, choices=Verdict.choices, blank=True)
    summary = models.TextField(blank=True)
    evidence = models.JSONField(default=list, blank=True)
    end_reason = models.CharField(max_length=200, blank=True, help_text="Why it ended early: a budget, a failure.")
    model = models.CharField(max_length=80, help_text="The model id the investigation runs on.")

    messages = models.JSONField(default=list, blank=True)
    tool_results = models.JSONField(default=dict, blank=True)
    tool_calls_used = models.PositiveIntegerField(default=0)
    tokens_used = models.PositiveIntegerField(default=0, help_text="What the token budget counts: all four kinds.")
    # Model tokens by kind, as the Messages API reports them (investigations/runs/usage.py).
    input_tokens = models.PositiveIntegerField(default=0)
    cache_creation_tokens = models.PositiveIntegerField(default=0)
    cache_read_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    budget_tool_calls = models.PositiveIntegerField()
    budget_tokens = models.PositiveIntegerField()
    budget_seconds = models.PositiveIntegerField()

    lease_owner = models.CharField(max_length=32, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    last_seq = models.PositiveIntegerField(default=0, help_text="The seq of its latest event.")

    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # When it was handed to a worker; None while its integration's start cap holds it queued.
    released_at = models.DateTimeField(default=timezone.now, null=True, blank=True, db_index=True)
    related_told = models.PositiveIntegerField(
        default=0, help_text="The id of the last related alert the model was told of."
    )
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Time spent waiting for analysts does not count against the time budget.
    waiting_since = models.DateTimeField(null=True, blank=True)
    waited_seconds = models.FloatField(default=0)

    objects = InvestigationQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["verdict"], name="investigation_verdict")]  # the list's filter
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["completed"]) | Q(verdict=""), name="investigation_verdict_only_when_completed"
            ),
        ]

    def __str__(self) -> str:
        return f"Investigation {self.pk} of {self.alert}"

    @property
    def correlation_id(self) -> str:
        """What the audit records of its tool calls carry."""
        return self.correlation_id_of(self.pk)

    @staticmethod
    def correlation_id_of(pk: int) -> str:
        return f"{CORRELATION_PREFIX}{pk}"

    @property
    def model_name(self) -> str:
        from investigations.runs.llm import display_name

        return display_name(self.model)

    @property
    def usage(self):
        from investigations.runs.usage import TokenUsage

        return TokenUsage(self.input_tokens, self.cache_creation_tokens, self.cache_read_tokens, self.output_tokens)

    @property
    def held(self) -> bool:
        """Queued but not yet handed to a worker: its integration started its cap this minute."""
        return self.status == self.Status.QUEUED and self.released_at is None

    @property
    def finished(self) -> bool:
        return self.status in self.FINAL


class Event(models.Model):
    """One step of an investigation as the transcript shows it, numbered in order."""

    class Kind(models.TextChoices):
        TEXT = "text"
        TOOL_CALL = "tool_call"
        TOOL_RESULT = "tool_result"
        STATUS = "status"
        VERDICT = "verdict"
        ACTION = "action"  # an action request was made or changed state

    investigation = models.ForeignKey(Investigation, on_delete=models.CASCADE, related_name="events")
    seq = models.PositiveIntegerField()
    kind = models.CharField(max_length=12, choices=Kind.choices)
    data = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["investigation", "seq"]
        constraints = [models.UniqueConstraint(fields=["investigation", "seq"], name="event_unique_seq")]

    def __str__(self) -> str:
        return f"{self.investigation_id}#{self.seq} {self.kind}"

    def as_message(self) -> dict:
        """The event as the websocket sends it and the page renders it (saved, backlog and live alike): every
        string the transcript shows as core.text shows it, for the page's script draws text as given. The model's
        text, a status's message, a verdict and a tool's name and result (a backend's data: an attacker's log
        line, a phishing subject) are as_read_on_page, keys too; a tool's arguments and result, drawn as pretty
        JSON, come as that text only (`input_json`, `result_json`: the script's JSON.stringify would double each
        escape's backslash), a result with the head of its envelope that the page reads beside it
        (live_messages.ResultHead): a backend's data is sent once. An action's target and outcome are as its
        decision card shows them. The saved data is unchanged: the model's conversation and the audit digests
        are made from it."""
        data = self.data
        if self.kind == self.Kind.ACTION:
            data = data | {
                "target": text.as_read_line(data["target"]),
                "outcome": text.as_read_on_page(data["outcome"]),
            }
        elif self.kind == self.Kind.TOOL_CALL:
            data = text.as_read_in({name: value for name, value in data.items() if name != "input"})
            data["input_json"] = text.as_read_json(self.data["input"])
        elif self.kind == self.Kind.TOOL_RESULT:
            from investigations.live_messages import ResultHead  # it reads this module's models

            head = {name: value for name, value in data["result"].items() if name in ResultHead.model_fields}
            data = text.as_read_in({name: value for name, value in data.items() if name != "result"} | {"result": head})
            data["result_json"] = text.as_read_json(self.data["result"])
        else:
            data = text.as_read_in(data)
        return {"seq": self.seq, "kind": self.kind, "at": self.created_at.isoformat(), "data": data}


class Budgets(models.Model):
    """What each new investigation may spend (architecture rule 7): one row, set by an admin.

    Its first values come from the deployment (GATEHOUSE_BUDGET_*); a running investigation
    keeps the budgets it started with.
    """

    tool_calls = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    tokens = models.PositiveIntegerField(validators=[MinValueValidator(1000)])
    seconds = models.PositiveIntegerField(validators=[MinValueValidator(10)])
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "budgets"
        constraints = [
            models.CheckConstraint(condition=Q(pk=1), name="budgets_single_row"),
            models.CheckConstraint(
                condition=Q(tool_calls__gte=1, tokens__gte=1000, seconds__gte=10), name="budgets_minimums"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.tool_calls} tool calls, {self.tokens} tokens, {self.seconds} s"

    @classmethod
    def current(cls) -> "Budgets":
        budgets, _ = cls.objects.get_or_create(pk=1, defaults=settings.INVESTIGATION_BUDGETS)
        return budgets
