from django.core.management.base import BaseCommand

from toolserver.lab import estate


class Command(BaseCommand):
    help = (
        "Rebuild the lab's simulated estate from a fixed seed, timed relative to now. Tickets, "
        "the write log and faults start afresh; keys are kept."
    )

    def add_arguments(self, parser):
        parser.add_argument("--seed", type=int, default=estate.SEED, help=f"random seed (default {estate.SEED})")

    def handle(self, *args, seed, **options):
        counts = estate.seed(seed=seed)
        self.stdout.write("Lab estate rebuilt: " + ", ".join(f"{n} {what}" for what, n in counts.items()))
        self.stdout.write(
            f"Stories: phished {estate.PHISHED_USER} on {estate.PHISHED_HOST}; beaconing {estate.BEACON_HOST}; "
            f"travelling {estate.BENIGN_USER} (benign)."
        )
