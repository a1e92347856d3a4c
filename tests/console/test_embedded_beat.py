"""The embedded default's periodic sweep keeps its schedule in memory, as production's beat does."""

from celery.beat import Scheduler

from console.embedded import embedded_beat


def test_the_embedded_sweep_keeps_no_schedule_file_that_two_consoles_would_share(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where a schedule shelve would be written: the console's working directory
    beat = embedded_beat()
    scheduler = beat.service.scheduler
    try:
        assert type(scheduler) is Scheduler
        assert {entry.task for entry in scheduler.schedule.values()} == {
            "investigations.tasks.sweep_investigations",
            "investigations.tasks.sweep_actions",
        }
        assert list(tmp_path.iterdir()) == []
    finally:
        scheduler.close()
