"""manage.py verify_audit: walk the audit chain and name the first record that was tampered with.

Exit status 0 only when the chain is intact. With --export FILE (JSON Lines from the console),
the check runs offline on the file instead: every record must match its hash and consecutive
records must link; with --digest FILE the signed chain head is checked too.
"""

import json

from django.core.management.base import BaseCommand, CommandError

from investigations import audit


class Command(BaseCommand):
    help = "Verify the audit trail's hash chain (or an exported file) and name the first broken record."

    def add_arguments(self, parser):
        parser.add_argument("--export", help="Check this JSON Lines export instead of the database.")
        parser.add_argument("--digest", action="append", default=[],
                            help="A signed digest (from the console or `audit_digest`) to check too; repeat it for several.")
        parser.add_argument("--public-key", help="The console's public key to trust (base64); default: the digest's own.")

    def handle(self, *args, export=None, digest=(), public_key=None, **options):
        signed = [self._digest(path, public_key) for path in digest]
        if export:
            checked, found, hashes = self._check_export(export)
        else:
            checked, found = audit.verify_database()
            hashes = None
        for each in signed:  # an earlier digest catches history rewritten since; every one must match
            found = found or self._against_digest(each, hashes)
        if found is not None:
            self.stderr.write(f"Audit chain broken after checking {checked} records: {found}")
            raise SystemExit(1)
        self.stdout.write(f"Audit chain intact: {checked} records.")

    def _digest(self, path: str, public_key: str | None) -> dict:
        with open(path) as file:
            signed = json.load(file)
        if not audit.check_digest(signed, public_key):
            self.stderr.write("The digest's signature does not verify: it was not signed by that key.")
            raise SystemExit(1)
        return signed

    def _check_export(self, path: str):
        """Each row against its own hash; each row against the one before it when they are consecutive."""
        checked, previous, hashes = 0, None, {}
        with open(path) as file:
            for number, line in enumerate(file, 1):
                try:
                    row = json.loads(line)
                except ValueError:
                    raise CommandError(f"line {number} is not JSON") from None
                checked += 1
                if audit.link_hash(row["prev_hash"], audit.content(row)) != row["hash"]:
                    return checked, audit.Break("edited", row["seq"], None, f"record #{row['seq']} no longer matches its hash"), hashes
                if previous is not None and row["seq"] == previous["seq"] + 1 and row["prev_hash"] != previous["hash"]:
                    return checked, audit.Break("edited", previous["seq"], None, f"record #{row['seq']} does not link to #{previous['seq']}"), hashes
                if previous is not None and row["seq"] <= previous["seq"]:
                    return checked, audit.Break("reordered", row["seq"], None, f"record #{row['seq']} comes after #{previous['seq']}"), hashes
                hashes[row["seq"]] = row["hash"]
                previous = row
        return checked, None, hashes

    def _against_digest(self, signed: dict, hashes: dict | None):
        if hashes is None:
            from investigations.models import AuditRecord

            held = AuditRecord.objects.filter(seq=signed["seq"]).values_list("hash", flat=True).first()
        else:
            held = hashes.get(signed["seq"])
            if held is None:
                self.stdout.write(f"The digest's head #{signed['seq']} is not in the export: only the records were checked.")
                return None
        if held != signed["hash"]:
            return audit.Break("edited", signed["seq"], None,
                               f"record #{signed['seq']} is not the one the signed digest of #{signed['seq']} ({signed['signed_at']}) names")
        self.stdout.write(f"The signed digest of #{signed['seq']} ({signed['signed_at']}) matches.")
        return None
