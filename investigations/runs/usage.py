"""Model tokens by kind, as the Messages API reports and bills them, and what they cost.

A turn's prompt is billed in three parts that add up to all of it: `input_tokens` (after the last
cache breakpoint, full price), `cache_creation_input_tokens` (written to the cache, a premium) and
`cache_read_input_tokens` (read from it, a fraction); then `output_tokens`. The token budget counts
all four (`total`): every token the model processed, whatever its price, so caching makes a run
cheaper and faster, never longer than its budget allows. The money is the estimated cost, from the
price table in settings (MODEL_PRICES, USD per million tokens).
"""

from dataclasses import dataclass, fields
from decimal import Decimal

from django.conf import settings

from investigations.runs.offline_model import OFFLINE_MODEL_ID

MILLION = Decimal(1_000_000)


@dataclass(frozen=True)
class TokenUsage:
    input: int = 0
    cache_creation: int = 0
    cache_read: int = 0
    output: int = 0

    @classmethod
    def of(cls, message) -> "TokenUsage":
        """A Message's usage; a count the API leaves out (null) is 0."""
        usage = getattr(message, "usage", None)
        return cls(
            input=getattr(usage, "input_tokens", 0) or 0,
            cache_creation=getattr(usage, "cache_creation_input_tokens", 0) or 0,
            cache_read=getattr(usage, "cache_read_input_tokens", 0) or 0,
            output=getattr(usage, "output_tokens", 0) or 0,
        )

    def __add__(self, other: "TokenUsage") -> "TokenUsage":
        return TokenUsage(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    @property
    def prompt(self) -> int:
        return self.input + self.cache_creation + self.cache_read

    @property
    def total(self) -> int:
        """What the token budget counts."""
        return self.prompt + self.output

    @property
    def cache_read_share(self) -> float | None:
        """The share of prompt tokens served from the cache; None before any turn."""
        return self.cache_read / self.prompt if self.prompt else None


def priced_as(model: str) -> str:
    """The model whose prices apply: the offline model's runs are priced as the configured Claude model's."""
    return settings.MODEL if model == OFFLINE_MODEL_ID else model


def estimated_cost(model: str, usage: TokenUsage) -> Decimal | None:
    """USD, from the price table; None when the table has no price for the model."""
    prices = settings.MODEL_PRICES.get(priced_as(model))
    if prices is None:
        return None
    return (
        usage.input * prices["input"]
        + usage.cache_creation * prices["cache_write"]
        + usage.cache_read * prices["cache_read"]
        + usage.output * prices["output"]
    ) / MILLION
