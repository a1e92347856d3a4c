"""A real TAXII 2.1 server for the tests: OASIS's medallion, its memory backend, on a loopback port.

Started from its own CLI (`medallion --host 127.0.0.1 --port P conf.json`) with a configuration
this module writes: one API root, one collection, a read-only feed account and a publisher (the
memory backend has no per-user rights: both may read and write; the adapter only reads). Ready once
its discovery answers; stopped (and waited for) by stop(). Indicators are published as a feed's
producer would: STIX 2.1 objects from stix2, POSTed in an envelope with the TAXII media type.
"""

import json
import subprocess
import sys
from pathlib import Path

import httpx2 as httpx
import stix2

from tests.support import free_port, listening, stop_process, wait_until

MEDIA_TYPE = "application/taxii+json;version=2.1"
API_ROOT = "feeds"
COLLECTION_ID = "8c2b6f5e-4d3a-4e1b-9f0a-1c2d3e4f5a6b"
READER, READER_PASSWORD = "soc-reader", "taxii-reader-password-0123456789"
PUBLISHER, PUBLISHER_PASSWORD = "publisher", "taxii-publisher-password-0123456789"
READY_S = 60


class Medallion:
    def __init__(self, directory: Path, *, page_size: int = 100, reader_password: str = READER_PASSWORD):
        self.port = free_port()
        self.reader_password = reader_password
        self.url = f"http://127.0.0.1:{self.port}"
        data, config = directory / "taxii-data.json", directory / "taxii-config.json"
        data.write_text(json.dumps(_data(self.url)))
        config.write_text(
            json.dumps(
                {
                    "backend": {
                        "module": "medallion.backends.memory_backend",
                        "module_class": "MemoryBackend",
                        "filename": str(data),
                    },
                    "users": {READER: reader_password, PUBLISHER: PUBLISHER_PASSWORD},
                    "taxii": {"max_page_size": page_size},
                }
            )
        )
        self.log_path = directory / "medallion.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 - the process writes it until stop() closes it
        self.process = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "medallion"),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                str(config),
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until(
                self._ready, timeout=READY_S, interval=0.05, what=f"medallion on port {self.port} ({self.log_path})"
            )
        except BaseException:
            self.stop()
            raise

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"medallion exited: {self.log_path.read_text()[-2000:]}")
        if not listening(self.port):
            return False
        try:
            return self._get("/taxii2/").status_code == 200
        except httpx.TransportError:
            return False

    def _get(self, path: str) -> httpx.Response:
        return httpx.get(
            f"{self.url}{path}", headers={"Accept": MEDIA_TYPE}, auth=(READER, self.reader_password), timeout=5
        )

    def params(self) -> dict[str, str]:
        """The adapter's parameters for the feed account."""
        return {"api_root": API_ROOT, "collection_id": COLLECTION_ID, "username": READER}

    def publish(self, *objects) -> None:
        """Add STIX objects to the collection, as the feed's producer does."""
        envelope = {"objects": [json.loads(obj.serialize()) for obj in objects]}
        response = httpx.post(
            f"{self.url}/{API_ROOT}/collections/{COLLECTION_ID}/objects/",
            content=json.dumps(envelope),
            headers={"Accept": MEDIA_TYPE, "Content-Type": MEDIA_TYPE},
            auth=(PUBLISHER, PUBLISHER_PASSWORD),
            timeout=10,
        )
        assert response.status_code == 202, response.text
        status = response.json()
        assert (status["status"], status["success_count"], status["failure_count"]) == ("complete", len(objects), 0), (
            status
        )

    def stop(self) -> None:
        stop_process(self.process)
        self._log.close()


def indicator(pattern: str, **fields) -> stix2.Indicator:
    return stix2.Indicator(pattern=pattern, pattern_type="stix", **fields)


def _data(url: str) -> dict:
    """The memory backend's content: discovery, one API root, one empty collection."""
    return {
        "/discovery": {
            "title": "Gatehouse test TAXII server",
            "default": f"{url}/{API_ROOT}/",
            "api_roots": [f"{url}/{API_ROOT}/"],
        },
        API_ROOT: {
            "information": {"title": "Test feeds", "versions": [MEDIA_TYPE], "max_content_length": 10_485_760},
            "status": [],
            "collections": [
                {
                    "id": COLLECTION_ID,
                    "title": "Indicators",
                    "can_read": True,
                    "can_write": True,
                    "media_types": ["application/stix+json;version=2.1"],
                    "objects": [],
                    "manifest": [],
                }
            ],
        },
    }
