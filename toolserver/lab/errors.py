"""The lab API's refusals. Views turn them into JSON answers; write views also record them."""


class LabError(Exception):
    status = 500

    def __init__(self, body: dict):
        super().__init__(body.get("error", "error"))
        self.body = body


class BadRequest(LabError):
    status = 400

    def __init__(self, detail: str):
        super().__init__({"error": "bad_request", "detail": detail})


class NotFound(LabError):
    status = 404

    def __init__(self, target: str):
        super().__init__({"error": "not_found", "target": target})


class IdempotencyConflict(LabError):
    """An Idempotency-Key already answered a different action or target."""

    status = 409

    def __init__(self, detail: str):
        super().__init__({"error": "idempotency_conflict", "detail": detail})
