from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from investigations.models import ApiToken
from investigations.tokens import create_api_token, revoke_token

NAME_MAX = ApiToken._meta.get_field("name").max_length


class Command(BaseCommand):
    help = (
        "Manage people's API tokens (read the API from a script; with --decide, also approve or reject action "
        "requests: /api/actions). "
        "`create USERNAME --name NAME` prints the token once (only a hash is kept); `list [USERNAME]` "
        "shows tokens, never their values; `revoke ID` stops one working."
    )

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True, metavar="{create,list,revoke}")
        create = actions.add_parser("create", help="create a token for a user and print it once")
        create.add_argument("username")
        create.add_argument("--name", required=True, help="what the token is for, e.g. 'chatops bot'")
        create.add_argument(
            "--decide",
            action="store_true",
            help="scope it to decide: it may approve and reject writes (a token without it only reads), and "
            "expires in GATEHOUSE_DECIDE_TOKEN_HOURS",
        )
        actions.add_parser("list", help="list tokens (never their values)").add_argument("username", nargs="?")
        actions.add_parser("revoke", help="revoke a token by its ID (see list)").add_argument("id", type=int)

    def handle(self, *args, action, **options):
        if action == "create":
            self._create(options["username"], options["name"], decide=options["decide"])
        elif action == "list":
            self._list(options.get("username"))
        else:
            self._revoke(options["id"])

    def _user(self, username: str):
        user = get_user_model().objects.filter(**{get_user_model().USERNAME_FIELD: username}).first()
        if user is None:
            raise CommandError(f'no user named "{username}"')
        return user

    def _create(self, username: str, name: str, *, decide: bool = False) -> None:
        name = name.strip()
        if not name or len(name) > NAME_MAX:
            raise CommandError(f"a token's name is 1 to {NAME_MAX} characters")
        user = self._user(username)
        if not user.is_active:
            raise CommandError(f'user "{username}" is inactive: its tokens would be refused')
        api_token, token = create_api_token(user, name, decide=decide)
        self.stdout.write(
            f'Created token {api_token.pk} "{name}" for {username}. The token (it will not be shown again):'
        )
        self.stdout.write(token)
        self.stdout.write(
            f"It acts with {username}'s permissions. Send it as the header  Authorization: Bearer <token>."
        )
        if decide:
            self.stdout.write(f"Scoped to decide; it expires at {api_token.expires_at.isoformat()}.")

    def _list(self, username: str | None) -> None:
        tokens = ApiToken.objects.select_related("user").order_by("user__username", "created_at", "pk")
        if username:
            tokens = tokens.filter(user=self._user(username))
        if not tokens:
            self.stdout.write("No API tokens. Create one with: manage.py api_tokens create USERNAME --name NAME")
            return
        row = "{:>6} {:20} {:30} {:12} {:17} {:17} {:17} {}"
        self.stdout.write(row.format("ID", "USER", "NAME", "TOKEN", "CREATED", "LAST USED", "EXPIRES", "REVOKED"))
        for token in tokens:
            self.stdout.write(
                row.format(
                    token.pk,
                    token.user.get_username(),
                    token.name,
                    token.token_prefix,
                    _when(token.created_at),
                    _when(token.last_used_at, "never"),
                    _when(token.expires_at),
                    _when(token.revoked_at, "no"),
                )
            )

    def _revoke(self, token_id: int) -> None:
        api_token = ApiToken.objects.select_related("user").filter(pk=token_id).first()
        if api_token is None:
            raise CommandError(f"no API token with ID {token_id}; see: manage.py api_tokens list")
        label = f'token {token_id} "{api_token.name}" of {api_token.user.get_username()}'
        if revoke_token(api_token, "manage.py api_tokens", "revoked with manage.py api_tokens"):
            self.stdout.write(f"Revoked {label}: it is refused from now on.")
        else:
            api_token.refresh_from_db()
            self.stdout.write(f"The {label} was already revoked at {_when(api_token.revoked_at)}.")


def _when(moment, absent: str = "") -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M") if moment else absent
