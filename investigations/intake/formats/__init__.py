"""Alert formats other systems send as they are (POST /api/alerts/{format}): one module per format, this registry.

Each module has NAME and `map(payload, context) -> Mapping` (formats/base.py says what a mapper
may and may not do). A new format: its module here, its line in FORMATS, its fixtures under
tests/investigations/fixtures/alerts/ and its tests in tests/investigations/test_alert_formats.py.
"""

from investigations.intake.formats import alertmanager, ocsf, splunk, wazuh
from investigations.intake.formats.base import Context, FormatError, Mapped, Mapping

FORMATS = {module.NAME: module.map for module in (splunk, alertmanager, wazuh, ocsf)}

__all__ = ["FORMATS", "Context", "FormatError", "Mapped", "Mapping"]
