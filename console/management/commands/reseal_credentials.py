from django.core.management.base import BaseCommand, CommandError

from console.manage import administration


class Command(BaseCommand):
    help = (
        "Seal every credential stored in the console again under the first key of "
        "GATEHOUSE_CREDENTIALS_KEY. To retire a sealing key: put the new key first "
        "(GATEHOUSE_CREDENTIALS_KEY=new,old), restart, run this, then remove the old key. "
        "Exits 1 when a credential opens with none of the keys (it is left as it is)."
    )

    def handle(self, *args, **options):
        done, unopenable = administration.reseal_credentials(by="manage.py reseal_credentials")
        for credential in done:
            self.stdout.write(f"resealed     {credential}")
        for credential in unopenable:
            self.stderr.write(f"not opened   {credential}")
        if unopenable:
            raise CommandError(
                f"{len(unopenable)} credential(s) open with none of the keys: set them again on the Tool servers page"
            )
