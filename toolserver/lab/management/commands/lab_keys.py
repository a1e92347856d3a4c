import os
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from toolserver.lab.keys import SERVER_SCOPES, fingerprint, issue_key


class Command(BaseCommand):
    help = (
        "Issue a lab key per tool server (revoking its previous one) and write each to "
        "DIR/<server>.key, readable by the owner only. Prints names and fingerprints, never keys."
    )

    def add_arguments(self, parser):
        parser.add_argument("--write-dir", required=True, type=Path, help="directory for the key files (created 0700)")
        parser.add_argument(
            "servers",
            nargs="*",
            metavar="SERVER",
            help=f"only these servers (default: all of {', '.join(SERVER_SCOPES)})",
        )

    def handle(self, *args, write_dir: Path, servers, **options):
        unknown = sorted(set(servers) - set(SERVER_SCOPES))
        if unknown:
            raise CommandError(f"unknown server(s): {', '.join(unknown)}; expected {', '.join(SERVER_SCOPES)}")
        write_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if write_dir.stat().st_mode & 0o077:
            raise CommandError(f"{write_dir} is readable by others: use a directory with mode 0700")
        for server in servers or SERVER_SCOPES:
            path = write_dir / f"{server}.key"
            # The old key is revoked only if the new one reached its file.
            with transaction.atomic():
                key = issue_key(server, SERVER_SCOPES[server])
                _write_private(path, key)
            self.stdout.write(f"{server:13} {fingerprint(key)}  {', '.join(SERVER_SCOPES[server]):30} -> {path}")


def _write_private(path: Path, content: str) -> None:
    """Write a file that is never, even for a moment, readable by anyone but its owner."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
