"""manage.py verify_audit: walk the audit chain and name the first record that was tampered with.

Exit status 0 only when the chain is intact. With --export FILE (JSON Lines from the console),
the check runs offline on the file instead: every record must match its hash and the file must
end with the head the console signed for it. A complete export must hold every record from #1 to
that head, each linking to the one before; a filtered export's records each prove their
membership of the signed tree, and must be exactly the records the head lists. Each --digest
(repeatable) must match too: an earlier digest catches history rewritten since it was taken.
An export's signature proves the console signed it only against a key pinned with --public-key:
without one, the file's own key is all it was checked against (a forger signs with theirs), so an
export that checks out otherwise ends UNPINNED, exit status 3, never "intact".
"""

import json

from django.core.management.base import BaseCommand, CommandError

from investigations.audit import chain as audit
from investigations.audit import merkle

UNPINNED = 3  # the exit status of an export checked against its own key only


class Command(BaseCommand):
    help = "Verify the audit trail's hash chain (or an exported file) and name the first broken record."

    def add_arguments(self, parser):
        parser.add_argument("--export", help="Check this JSON Lines export instead of the database.")
        parser.add_argument(
            "--digest",
            action="append",
            default=[],
            help="A signed digest (from the console or `audit_digest`) to check too; repeat it for several.",
        )
        parser.add_argument(
            "--public-key",
            help="The console's public key to trust (base64, from `audit_digest --public-key`); without it an "
            "export is checked against the key it names itself, and ends UNPINNED (exit status 3).",
        )

    def handle(self, *args, export=None, digest=(), public_key=None, **options):
        signed = [self._digest(path, public_key) for path in digest]
        if export:
            trusted = public_key or (signed[0]["public_key"] if signed else None)
            checked, found, hashes, head = self._check_export(export, trusted)
        else:
            checked, found = audit.verify_database()
            hashes = head = None
        for each in signed:  # an earlier digest catches history rewritten since; every one must match
            found = found or self._against_digest(each, hashes, head)
        if found is not None:
            self.stderr.write(f"Audit chain broken after checking {checked} records: {found}")
            raise SystemExit(1)
        if export and not public_key:
            self.stderr.write(
                f"UNPINNED: the export's {checked} records match the signed head it carries, but that "
                "signature was checked only against the public key the file (or its digest) names, which "
                "whoever wrote the file chooses. Pass --public-key (the console's `audit_digest --public-key`) "
                "to check that the console signed it."
            )
            raise SystemExit(UNPINNED)
        if head and head["export"] == "filtered":
            self.stdout.write(
                f"Audit chain intact: {checked} records of a filtered export, each proven a member "
                f"of the chain signed at #{head['seq']}."
            )
        else:
            self.stdout.write(f"Audit chain intact: {checked} records.")

    def _digest(self, path: str, public_key: str | None) -> dict:
        with open(path) as file:
            signed = json.load(file)
        if not audit.check_digest(signed, public_key):
            self.stderr.write("The digest's signature does not verify: it was not signed by that key.")
            raise SystemExit(1)
        return signed

    def _check_export(self, path: str, public_key: str | None):
        """(records checked, first break or None, {seq: hash}, the export's signed head)."""
        checked, hashes, proven, previous, head = 0, {}, [], None, None
        with open(path) as file:
            for number, line in enumerate(file, 1):
                try:
                    row = json.loads(line)
                except ValueError:
                    raise CommandError(f"line {number} is not JSON") from None
                if head is not None:
                    raise CommandError(f"line {number} follows the export's signed head")
                if "signed_head" in row:
                    head = row["signed_head"]
                    continue
                checked += 1
                seq, after = row["seq"], previous["seq"] if previous else 0
                if audit.link_hash(row["prev_hash"], audit.content(row)) != row["hash"]:
                    return (
                        checked,
                        audit.Break("edited", seq, None, f"record #{seq} no longer matches its hash"),
                        hashes,
                        head,
                    )
                if seq <= after:
                    return (
                        checked,
                        audit.Break("reordered", seq, None, f"record #{seq} comes after #{after}"),
                        hashes,
                        head,
                    )
                if "proof" in row:  # a filtered export: checked against the signed tree below
                    proven.append(row)
                elif seq != after + 1:
                    missing = f"#{after + 1}" if seq == after + 2 else f"#{after + 1}–#{seq - 1}"
                    return (
                        checked,
                        audit.Break("deleted", after + 1, None, f"record {missing} is missing before record #{seq}"),
                        hashes,
                        head,
                    )
                elif row["prev_hash"] != (previous["hash"] if previous else audit.GENESIS):
                    return (
                        checked,
                        audit.Break("edited", after, None, f"record #{seq} does not link to #{after}"),
                        hashes,
                        head,
                    )
                hashes[seq] = row["hash"]
                previous = row
        last = previous["seq"] if previous else 0
        return checked, self._against_own_head(head, public_key, hashes, proven, last), hashes, head

    def _against_own_head(self, head: dict | None, public_key: str | None, hashes: dict, proven: list, last: int):
        """The export's records against the head the console signed for it."""
        if head is None:
            return audit.Break(
                "deleted", last + 1, None, f"the export has no signed head after record #{last}: it was cut"
            )
        if not audit.check_digest(head, public_key):
            return audit.Break(
                "edited", head.get("seq", 0), None, "the export's signed head was not signed by that key"
            )
        size, root = head["seq"], head["root"]
        if head["export"] == "complete":
            if last < size:
                return audit.Break(
                    "deleted", last + 1, None, f"the export ends at record #{last}, before the signed head #{size}"
                )
            if missing := next((seq for seq in range(1, size + 1) if seq not in hashes), None):
                return audit.Break("deleted", missing, None, f"record #{missing} is missing from the complete export")
            if last > size:
                return audit.Break("inserted", size + 1, None, f"records after #{size} are beyond the signed head")
            if hashes.get(size, audit.GENESIS) != head["hash"] or merkle.Tree(hashes.values(), size).root != root:
                return audit.Break("edited", size, None, f"the records do not make the chain signed at #{size}")
            return None
        listed = set(head["records"])
        for row in proven:
            if row["seq"] not in listed:
                return audit.Break(
                    "inserted", row["seq"], None, f"record #{row['seq']} is not one the export's signed head lists"
                )
            if not merkle.proves(row["hash"], row["seq"], size, row["proof"], root):
                return audit.Break(
                    "edited", row["seq"], None, f"record #{row['seq']} is not a member of the chain signed at #{size}"
                )
        if missing := sorted(listed - {row["seq"] for row in proven}):
            return audit.Break("deleted", missing[0], None, f"record #{missing[0]} is missing from the filtered export")
        return None

    def _against_digest(self, signed: dict, hashes: dict | None, head: dict | None):
        seq, when = signed["seq"], signed["signed_at"]
        if hashes is None:
            from investigations.models import AuditRecord

            held = AuditRecord.objects.filter(seq=seq).values_list("hash", flat=True).first()
            if "root" in signed and audit.chain_tree(seq).root != signed["root"]:
                held = None
        elif head["export"] == "complete":
            if seq > head["seq"]:
                return audit.Break(
                    "deleted",
                    head["seq"] + 1,
                    None,
                    f"the export ends at record #{head['seq']}, before the signed head #{seq} ({when})",
                )
            held = hashes.get(seq, audit.GENESIS)
            if "root" in signed and merkle.Tree((hashes[n] for n in range(1, seq + 1)), seq).root != signed["root"]:
                held = None
        elif seq != head["seq"]:  # proving that one tree extends another needs the records between them
            return audit.Break(
                "deleted",
                seq,
                None,
                f"a filtered export proves its records against its own head #{head['seq']}; "
                f"check the digest of #{seq} against a complete export",
            )
        else:
            held = head["hash"] if signed.get("root") == head["root"] else None
        if held != signed["hash"]:
            return audit.Break(
                "edited", seq, None, f"record #{seq} is not the one the signed digest of #{seq} ({when}) names"
            )
        self.stdout.write(f"The signed digest of #{seq} ({when}) matches.")
        return None
