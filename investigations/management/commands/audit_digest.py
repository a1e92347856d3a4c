"""manage.py audit_digest: print the signed digest of the audit chain's head (JSON), or the public key."""

import json

from django.core.management.base import BaseCommand

from investigations.audit import chain as audit


class Command(BaseCommand):
    help = "Print the audit chain head, signed (Ed25519), for offline verification of exports."

    def add_arguments(self, parser):
        parser.add_argument("--public-key", action="store_true", help="Print only the public key (base64) to pin.")

    def handle(self, *args, public_key=False, **options):
        self.stdout.write(audit.public_key() if public_key else json.dumps(audit.signed_digest(), indent=2))
