"""Text shown as it is sent: the characters that change how text reads, or hide in it, as their escapes.

A right-to-left override reorders what follows it; a zero-width space, a variation selector (256 of them:
a byte each, so a whole secret hides in a one-line comment) or a combining grapheme joiner draws as
nothing; a line separator ends a log line for readers that break there. What a person decides on (an
approval's arguments) or reads back (a log line) shows each as its escape, never as itself.
"""

import json
import re
from unicodedata import category

_HIDING_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})  # controls, format characters, line/paragraph separators
# Unicode's Default_Ignorable_Code_Point outside those categories (DerivedCoreProperties.txt): drawn as nothing.
_IGNORABLE_RANGES = (
    (0x034F, 0x034F),  # combining grapheme joiner
    (0x115F, 0x1160),  # Hangul fillers
    (0x17B4, 0x17B5),  # Khmer inherent vowels
    (0x180B, 0x180F),  # Mongolian free variation selectors
    (0x2065, 0x2065),
    (0x3164, 0x3164),  # Hangul filler
    (0xFE00, 0xFE0F),  # variation selectors
    (0xFFA0, 0xFFA0),  # halfwidth Hangul filler
    (0xFFF0, 0xFFF8),
    (0xE0000, 0xE0FFF),  # tags and variation selectors supplement
)


def hides(char: str) -> bool:
    """Whether `char` changes how the text around it reads, or reads as nothing."""
    if category(char) in _HIDING_CATEGORIES:
        return True
    point = ord(char)
    return any(low <= point <= high for low, high in _IGNORABLE_RANGES)


def escape(char: str) -> str:
    """Python's own escape of one character: \\xNN, \\uNNNN or \\UNNNNNNNN (never ambiguous with what follows)."""
    point = ord(char)
    return f"\\x{point:02x}" if point <= 0xFF else f"\\u{point:04x}" if point <= 0xFFFF else f"\\U{point:08x}"


# What may hide: an ASCII control, or any character past ASCII (hides() decides each). Text is nearly all
# ASCII, and a page's JSON has a line break every line: only these are looked at, not every character.
_MAY_HIDE = re.compile(r"[\x00-\x1f\x7f-\U0010ffff]")


def as_read(text: str, keep: str = "") -> str:
    """`text` with every character that hides (`hides`) shown as its escape, but those in `keep`."""
    if text.isascii() and text.isprintable():  # nearly every text: nothing to escape
        return text

    def shown(found: re.Match) -> str:
        char = found.group()
        return escape(char) if char not in keep and hides(char) else char

    return _MAY_HIDE.sub(shown, text)


def as_read_on_page(text: str) -> str:
    """`text` as a page shows it (as_read): line breaks and tabs stay, a page draws them (a <pre>'s lines)
    or folds them into a space, hiding nothing. The template filter's rule and the live transcript's."""
    return as_read(text, keep="\n\t")


def as_read_line(text: str) -> str:
    """`text` as one line (its runs of whitespace one space), shown as read: an action's target, wherever named."""
    return as_read(" ".join(text.split()))


def as_read_in(value):
    """A JSON value with every string in it, keys too, as a page shows it (as_read_on_page): its parts drawn as text."""
    if isinstance(value, str):
        return as_read_on_page(value)
    if isinstance(value, list):
        return [as_read_in(item) for item in value]
    if isinstance(value, dict):
        return {as_read_on_page(key): as_read_in(item) for key, item in value.items()}
    return value


def as_read_json(value) -> str:
    """A JSON value as a page shows it whole: its pretty JSON text, then as_read_on_page (the audit pages' rule).

    Made from the value as sent, not from as_read_in's: JSON would escape each escape's backslash again
    (\\\\u202e read for a \\u202e). JSON's own escapes (a line break in a string: \\n) are visible already."""
    return as_read_on_page(json.dumps(value, indent=2, ensure_ascii=False))
