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
    """The last verdict block of a final turn, or None: an opening tag, one JSON object, the closing tag.

    Read as JSON from each opening tag, the last first: the model may quote what it read (a command line
    holding "<verdict>" or "</verdict>") in its own block's evidence, and a tag inside a string must not
    void the block (an attacker's way to turn "malicious" into "inconclusive")."""
    decoder, start = json.JSONDecoder(), len(text)
    while (start := text.rfind(VERDICT_OPEN, 0, start)) >= 0:
        body = start + len(VERDICT_OPEN)
        body += len(text[body:]) - len(text[body:].lstrip())
        try:
            verdict, end = decoder.raw_decode(text, body)
        except ValueError:
            continue
        if (
            isinstance(verdict, dict)
            and verdict.get("verdict") in VERDICTS
            and text[end:].lstrip().startswith(VERDICT_CLOSE)
        ):
            return verdict
    return None


def _clip(text: str) -> str:
    text = " ".join(text.split()).replace("<", "(").replace(">", ")")  # nothing that could close a block
    return text if len(text) <= EVIDENCE_MAX else text[: EVIDENCE_MAX - 3].rstrip() + "..."
