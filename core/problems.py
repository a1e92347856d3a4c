"""What every API answers when it refuses: a 401 with its Bearer challenge, and the problem bodies
the OpenAPI schema names (a detail; a detail with one entry per invalid field)."""

from ninja import Field, Schema
from ninja.errors import AuthenticationError


class TokenRejected(AuthenticationError):
    """A 401 that carries its Bearer challenge (RFC 6750); console/api.py turns it into the response."""

    def __init__(self, message: str, *, invalid_token: bool = False) -> None:
        super().__init__(401, message)
        self.challenge = 'Bearer error="invalid_token"' if invalid_token else "Bearer"


class Problem(Schema):
    detail: str


class FieldProblem(Schema):
    field: str | None = Field(description="Dotted path inside the body, e.g. `severity`; null for the body as a whole.")
    message: str


class InvalidInput(Schema):
    detail: str
    errors: list[FieldProblem] = Field(
        default=[], description="One per invalid field; absent when the body is not JSON."
    )
