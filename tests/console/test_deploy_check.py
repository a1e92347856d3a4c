from tests.console.test_start_errors import PRODUCTION
from tests.support import console_env, run_manage


def test_check_deploy_is_clean_in_production_mode():
    result = run_manage(
        "check", "--deploy", "--fail-level", "DEBUG", env=console_env(**PRODUCTION, GATEHOUSE_HTTPS=None)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_debug_is_off_unless_asked_for():
    result = run_manage(
        "shell", "-v0", "-c", "from django.conf import settings; print(settings.DEBUG)", env=console_env(**PRODUCTION)
    )
    assert result.stdout.strip() == "False", result.stderr
