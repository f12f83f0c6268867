"""Untrusted tag values made printable (plugins/module_utils/fumidai_text.py):
plain names stay bare, anything else is quoted, escaped and capped, so no
value can add a line, repaint the terminal, reorder text or be templated."""

from __future__ import annotations

import pytest
from ansible_collections.fumidai.vpc.plugins.module_utils.fumidai_text import NAME_LIMIT, name, text


@pytest.mark.parametrize("plain", ["web01", "nat-instance", "fumidai_vpc.prod", "i-0123456789abcdef0", "a" * 63])
def test_plain_names_are_shown_bare(plain):
    assert name(plain) == plain


@pytest.mark.parametrize(("value", "shown"), [
    ("a b", '"a b"'),
    ("0 *", '"0 *"'),
    ('say "hi"', r'"say \"hi\""'),
    ("back\\slash", r'"back\\slash"'),
    ("web01\nMatch exec \"touch /tmp/x\"", r'"web01\nMatch exec \"touch /tmp/x\""'),
    ("\r\t", r'"\r\t"'),
    ("\x1b[2J\x1b[31mred", r'"\x1b[2J\x1b[31mred"'),
    ("\x00\x7f\x85", r'"\x00\x7f\x85"'),
    ("abc\u202edef", r'"abc\u202edef"'),            # right-to-left override
    ("zero\u200bwidth", r'"zero\u200bwidth"'),       # zero-width space (format character)
    ("line\u2028sep", r'"line\u2028sep"'),
    ("{{ lookup('pipe', 'id') }}", r'''"\x7b{ lookup('pipe', 'id') }}"'''),
    ("{% raw %}{# c #}{{{{", r'"\x7b% raw %}\x7b# c #}\x7b\x7b\x7b{"'),
    ("$(touch x) `id` %h <script>", '"$(touch x) `id` %h <script>"'),
    ("踏み台", '"踏み台"'),                          # printable non-ASCII stays readable
    ("", '""'),
    (None, '""'),
    (42, "42"),
])
def test_other_names_are_quoted_and_escaped(value, shown):
    assert name(value) == shown


def test_long_names_are_capped_with_an_ellipsis():
    shown = name("w" * 300)
    assert shown == '"' + "w" * NAME_LIMIT + '…"'
    # Escapes never let a capped name grow without bound either.
    assert len(name("\n" * 300)) == 2 + 2 * NAME_LIMIT + 1


@pytest.mark.parametrize("value", ["a\nb", "\x1b[2J", "x\u2028y", "{{ 1 }}", "a\u202eb", "c\u0085d"])
def test_nothing_dangerous_survives(value):
    for shown in (name(value), text(value)):
        assert not any(c in shown for c in "\n\r\x1b\u2028\u202e\u0085")
        assert "{{" not in shown


def test_free_text_is_escaped_without_quotes_and_capped():
    assert text('Health checks failed with these codes: [502]\n"x"') == \
        r'Health checks failed with these codes: [502]\n"x"'
    assert text("x" * 500).endswith("…") and len(text("x" * 500)) == 201
