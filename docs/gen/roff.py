"""Minimal roff (man(7) macro) writing: escaping and the few macros syncd's man pages use.

Everything passes through :func:`text`, so a help string can never start a roff request (a
leading ``.`` or ``'``), inject an escape (``\\``), or carry a character groff would warn
about (non-ASCII is written as ``\\[uXXXX]``).
"""

from __future__ import annotations

# A word longer than this (an LDAP filter, a URL) may break after these characters, which
# groff otherwise cannot do without hyphenation (and then warns "can't break line").
LONG_WORD = 30
BREAK_AFTER = ")/,|&"


def _word(word: str) -> str:
    out = []
    for char in word:
        if char == "\\":
            out.append("\\e")
        elif char == "-":
            out.append("\\-")
        elif ord(char) > 126:
            out.append(f"\\[u{ord(char):04X}]")
        else:
            out.append(char)
        if len(word) > LONG_WORD and char in BREAK_AFTER:
            out.append("\\:")
    return "".join(out)


def text(value: str) -> str:
    """``value`` as roff text on one line: escapes, hyphens as minus signs, no requests."""
    line = " ".join(_word(word) for word in value.split())
    return "\\&" + line if line[:1] in (".", "'") else line


def bold(value: str) -> str:
    return f"\\fB{text(value)}\\fR"


def italic(value: str) -> str:
    return f"\\fI{text(value)}\\fR"


def quoted(value: str) -> str:
    """An argument of a macro (``.SS "a b"``): double quotes inside become ``\\(dq``."""
    return '"' + text(value).replace('"', "\\(dq") + '"'


class Page:
    """Lines of one man page, built in order."""

    def __init__(self, name: str, section: int, source: str, manual: str) -> None:
        self.lines = [
            f".TH {name.upper()} {section} {quoted('')} {quoted(source)} {quoted(manual)}",
            # Left-aligned, not justified: long setting paths and defaults would otherwise
            # leave lines groff cannot adjust (a warning under man --warnings); no hyphenation
            # either, which would split option names, paths and LDAP filters.
            ".ad l",
            ".nh",
        ]

    def section(self, title: str) -> None:
        self.lines.append(f".SH {quoted(title.upper())}")

    def subsection(self, title: str) -> None:
        self.lines.append(f".SS {quoted(title)}")

    def paragraph(self, *parts: str) -> None:
        """A new paragraph of already formatted (escaped) parts."""
        self.lines.append(".PP")
        self.lines.extend(part for part in parts if part)

    def item(self, tag: str, *body: str) -> None:
        """A tagged paragraph (``.TP``): ``tag`` and ``body`` already formatted."""
        self.lines.extend([".TP", tag])
        filled = [part for part in body if part]
        self.lines.extend(filled or ["\\&"])

    def line_break(self) -> str:
        """A break inside a paragraph (as a body part of :meth:`item`)."""
        return ".br"

    def raw(self, line: str) -> None:
        self.lines.append(line)

    def render(self) -> str:
        return "\n".join(self.lines) + "\n"
