"""The verdict format the system prompt (prompts.py) asks the model to end with, and its parser."""

import json
import re

VERDICT_OPEN, VERDICT_CLOSE = "<verdict>", "</verdict>"
VERDICTS = ("malicious", "benign", "inconclusive")
EVIDENCE_MAX = 300


def verdict_block(verdict: str, summary: str, evidence: list[str]) -> str:
    """The block a final turn ends with. < and > are escaped so nothing inside can close it early."""
    payload = json.dumps({"verdict": verdict, "summary": summary, "evidence": [_clip(item) for item in evidence]})
    return VERDICT_OPEN + payload.replace("<", "\\u003c").replace(">", "\\u003e") + VERDICT_CLOSE


def parse_verdict(text: str) -> dict | None:
    """The verdict block a final turn ends with, or None: an opening tag, one JSON object, the closing tag.

    Read as JSON from an opening tag, the last first: the model may quote what it read (a command line holding
    "<verdict>" or "</verdict>") in its own block's evidence, and a tag inside one of its strings must not void
    it (an attacker's way to turn "malicious" into "inconclusive"). An earlier block counts only if the later
    tags are inside it: a block the model quoted from a log is never its verdict, even when its own is cut off."""
    # The last tag that opens an object: the model's own block, whole or cut off (a tag merely named in the
    # prose after it, "my <verdict> above", opens none).
    last = max((match.start() for match in _OPENS_OBJECT.finditer(text)), default=-1)
    decoder = json.JSONDecoder()
    start = len(text)
    while (start := text.rfind(VERDICT_OPEN, 0, start)) >= 0:
        body = _SPACE.match(text, start + len(VERDICT_OPEN)).end()
        try:
            verdict, end = decoder.raw_decode(text, body)
        except (ValueError, RecursionError):  # RecursionError: brackets nested past Python's depth
            continue
        if end <= last:
            return None  # the last opening tag is not inside it: the model's own block did not parse
        if isinstance(verdict, dict) and verdict.get("verdict") in VERDICTS:
            return verdict if text.startswith(VERDICT_CLOSE, _SPACE.match(text, end).end()) else None
    return None


_SPACE = re.compile(r"\s*")
_OPENS_OBJECT = re.compile(re.escape(VERDICT_OPEN) + r"\s*\{")


def _clip(text: str) -> str:
    text = " ".join(text.split()).replace("<", "(").replace(">", ")")  # nothing that could close a block
    return text if len(text) <= EVIDENCE_MAX else text[: EVIDENCE_MAX - 3].rstrip() + "..."
