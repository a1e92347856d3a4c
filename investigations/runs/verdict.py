"""The verdict format the system prompt (prompts.py) asks the model to end with, and its parser."""

import json

VERDICT_OPEN, VERDICT_CLOSE = "<verdict>", "</verdict>"
VERDICTS = ("malicious", "benign", "inconclusive")
EVIDENCE_MAX = 300


def verdict_block(verdict: str, summary: str, evidence: list[str]) -> str:
    """The block a final turn ends with. < and > are escaped so nothing inside can close it early."""
    payload = json.dumps({"verdict": verdict, "summary": summary, "evidence": [_clip(item) for item in evidence]})
    return VERDICT_OPEN + payload.replace("<", "\\u003c").replace(">", "\\u003e") + VERDICT_CLOSE


def parse_verdict(text: str) -> dict | None:
    """The verdict block at the end of a final turn, or None."""
    start, end = text.rfind(VERDICT_OPEN), text.rfind(VERDICT_CLOSE)
    if start < 0 or end < start:
        return None
    try:
        verdict = json.loads(text[start + len(VERDICT_OPEN) : end])
    except ValueError:
        return None
    if not isinstance(verdict, dict) or verdict.get("verdict") not in VERDICTS:
        return None
    return verdict


def _clip(text: str) -> str:
    text = " ".join(text.split()).replace("<", "(").replace(">", ")")  # nothing that could close a block
    return text if len(text) <= EVIDENCE_MAX else text[: EVIDENCE_MAX - 3].rstrip() + "..."
