"""Untrusted text made safe to print: tag values and other strings read from AWS.

A Name tag or a description is whatever someone allowed to tag resources
wrote. The doctor and the audit print them inside report lines, where a
newline could forge a line ("[PASS] ..."), an escape sequence could repaint
the terminal, a bidirectional control could reorder what is shown, "{{ }}"
could be templated by whatever consumes the report next, and a very long
value could push the verdict off the screen.

``name()`` shows a name bare when it is plain (the inventory's safe set:
letters, digits, ".", "_" and "-", at most 63 characters) and otherwise
double-quoted, with control and format characters escaped the way Python
writes them (\\n, \\x1b, \\u202e), backslash and quote escaped, Jinja openers
broken ("{{" -> "\\x7b{") and the length capped with an ellipsis. ``text()``
does the same for free text (descriptions) without the quotes. Printable
non-ASCII (e.g. Japanese names) is kept as it is.

Imported as ``ansible_collections.fumidai.vpc.plugins.module_utils.fumidai_text``.
"""

from __future__ import annotations

import re
import unicodedata

PLAIN_NAME = re.compile(r"^[A-Za-z0-9._-]{1,63}$")
NAME_LIMIT = 64
TEXT_LIMIT = 200
ELLIPSIS = "…"
_SHORT_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(char: str, quote: str) -> str:
    if char in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[char]
    if quote and char == quote:
        return "\\" + char
    # Cc controls (newline, ESC), Cf formats (bidi overrides, zero-width), Cs/Co/Cn, and the line and
    # paragraph separators (U+2028/U+2029) that some terminals and editors treat as line breaks.
    category = unicodedata.category(char)
    if category[0] == "C" or category in ("Zl", "Zp"):
        code = ord(char)
        if code < 0x100:
            return f"\\x{code:02x}"
        return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
    return char


def _escape(value: str, limit: int, quote: str = "") -> str:
    cut = len(value) > limit
    value = value[:limit]
    out = []
    for index, char in enumerate(value):
        # "{{", "{%" and "{#" open Jinja; escaping the brace leaves nothing a template engine would run.
        if char == "{" and value[index + 1:index + 2] in ("{", "%", "#"):
            out.append("\\x7b")
        else:
            out.append(_escape_char(char, quote))
    return "".join(out) + (ELLIPSIS if cut else "")


def name(value: object, limit: int = NAME_LIMIT) -> str:
    """A resource name (tag value) as it may appear in a report line: bare when plain, else quoted."""
    value = "" if value is None else str(value)
    if PLAIN_NAME.match(value):
        return value
    return '"' + _escape(value, limit, quote='"') + '"'


def text(value: object, limit: int = TEXT_LIMIT) -> str:
    """Free text (a description, a reason) with nothing in it that could break a report line."""
    return _escape("" if value is None else str(value), limit)
