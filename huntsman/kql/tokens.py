"""KQL lexer: text → tokens with 1-based line/column.

Keywords are not distinguished from identifiers here (most KQL keywords are also valid names);
the parser decides by context. Hyphenated operator names (``project-away``), bang operators
(``!has``) and ``in~`` are single tokens. ``datetime(...)``, ``timespan(...)`` and ``guid(...)``
bodies are opaque text, parsed after lexing as Kusto does.

>>> [t.text for t in tokenize("T | project-away x | where a !has 'b'")][:6]
['T', '|', 'project-away', 'x', '|', 'where']
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from huntsman.errors import KqlSyntaxError


class Kind(Enum):
    IDENT = "identifier"
    STRING = "string"
    LONG = "long"
    REAL = "real"
    TIMESPAN = "timespan"
    OPAQUE = "opaque"  # the body of datetime(...)/timespan(...)/guid(...), text in `value`
    GUID = "guid"
    OP = "operator"
    EOF = "end of query"


@dataclass(frozen=True, slots=True)
class Token:
    kind: Kind
    text: str
    value: object
    line: int
    col: int
    pos: int
    end: int


HYPHENATED = {
    "project-away", "project-keep", "project-rename", "project-reorder", "project-smart",
    "mv-expand", "mv-apply", "parse-where", "parse-kv", "make-series", "top-nested",
    "top-hitters", "sample-distinct", "assert-schema", "macro-expand", "make-graph",
    "graph-match", "graph-to-table", "graph-shortest-paths", "graph-mark-components",
    "scan-expand", "partition-by", "granny-asc", "granny-desc",
}
BANG_WORDS = {
    "has", "contains", "in", "between", "startswith", "endswith", "hasprefix", "hassuffix",
    "has_cs", "contains_cs", "startswith_cs", "endswith_cs", "hasprefix_cs", "hassuffix_cs",
}
OPAQUE_CALLS = {"datetime", "date", "timespan", "time", "guid", "uuid", "uniqueid"}
PUNCT = sorted(
    ["|", "(", ")", "[", "]", "{", "}", ",", ";", ".", "..", "=", "==", "!=", "<>", "<", "<=",
     ">", ">=", "=~", "!~", "+", "-", "*", "/", "%", ":", "=>", "?", "@"],
    key=len, reverse=True,
)

# Timespan units in ticks (1 tick = 100 ns). Longest spellings first for the regex.
TICKS_PER_UNIT = {
    "d": 864_000_000_000, "day": 864_000_000_000, "days": 864_000_000_000,
    "h": 36_000_000_000, "hr": 36_000_000_000, "hrs": 36_000_000_000,
    "hour": 36_000_000_000, "hours": 36_000_000_000,
    "m": 600_000_000, "min": 600_000_000, "minute": 600_000_000, "minutes": 600_000_000,
    "s": 10_000_000, "sec": 10_000_000, "second": 10_000_000, "seconds": 10_000_000,
    "ms": 10_000, "milli": 10_000, "millis": 10_000, "millisecond": 10_000,
    "milliseconds": 10_000,
    "microsecond": 10, "microseconds": 10, "micro": 10, "micros": 10,
    "nanosecond": 0.01, "nanoseconds": 0.01, "nano": 0.01, "nanos": 0.01,
    "tick": 1, "ticks": 1,
}
_NUM = re.compile(r"(?:\d+\.\d*(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|\.\d+(?:[eE][+-]?\d+)?|\d+)")
_HEX = re.compile(r"0[xX][0-9a-fA-F]+")
_IDENT = re.compile(r"[A-Za-z_$][A-Za-z0-9_]*")
_WORD_AFTER_NUM = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_GUID = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}(?![0-9A-Za-z_])")
_WS = " \t\r\n\f\v\u00a0\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a" \
      "\u200b\u3000\ufeff"
_DIGITS = frozenset("0123456789")
_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "a": "\a", "b": "\b", "f": "\f", "n": "\n",
            "r": "\r", "t": "\t", "v": "\v", "0": "\0"}


class Lexer:
    def __init__(self, text: str):
        self.text = text
        self.i = 0
        self.line = 1
        self.line_start = 0
        self.tokens: list[Token] = []

    def error(self, msg: str, pos: int | None = None) -> KqlSyntaxError:
        p = self.i if pos is None else pos
        line = self.text.count("\n", 0, p) + 1
        col = p - (self.text.rfind("\n", 0, p) + 1) + 1
        return KqlSyntaxError(msg, line, col, self.text)

    def emit(self, kind: Kind, start: int, value: object = None) -> None:
        text = self.text[start:self.i]
        line = self.text.count("\n", 0, start) + 1
        col = start - (self.text.rfind("\n", 0, start) + 1) + 1
        self.tokens.append(Token(kind, text, value, line, col, start, self.i))

    def run(self) -> list[Token]:
        t = self.text
        n = len(t)
        while True:
            self.skip_trivia()
            if self.i >= n:
                break
            start = self.i
            c = t[self.i]
            if c in "\"'" or (c == "@" and self.i + 1 < n and t[self.i + 1] in "\"'"):
                self.emit(Kind.STRING, start, self.read_string())
            elif c in "hH" and self.starts_obfuscated():
                self.i += 1
                self.emit(Kind.STRING, start, self.read_string())
            elif t.startswith("```", self.i) or t.startswith("~~~", self.i):
                self.emit(Kind.STRING, start, self.read_multiline())
            elif c in _DIGITS or (c == "." and self.i + 1 < n and t[self.i + 1] in _DIGITS
                                 and not (self.tokens and self.tokens[-1].text == ".")):
                self.read_number(start)
            elif c == "!" and self.i + 1 < n and t[self.i + 1] in _LETTERS:
                m = _IDENT.match(t, self.i + 1)
                assert m
                word = m.group(0)
                if word in BANG_WORDS:
                    self.i = m.end()
                    if word == "in" and self.i < n and t[self.i] == "~":
                        self.i += 1
                    self.emit(Kind.OP, start)
                else:
                    raise self.error(f"Unexpected '!{word}': there is no operator '!{word}'")
            elif c in _LETTERS or c in "_$":
                self.read_word(start)
            else:
                for p in PUNCT:
                    if t.startswith(p, self.i):
                        self.i += len(p)
                        self.emit(Kind.OP, start)
                        break
                else:
                    raise self.error(f"Unexpected character '{c}'")
        self.tokens.append(Token(Kind.EOF, "", None, *self.position(n), n, n))
        return self.tokens

    def position(self, p: int) -> tuple[int, int]:
        line = self.text.count("\n", 0, p) + 1
        return line, p - (self.text.rfind("\n", 0, p) + 1) + 1

    def skip_trivia(self) -> None:
        t, n = self.text, len(self.text)
        while self.i < n:
            c = t[self.i]
            if c in _WS:
                self.i += 1
            elif t.startswith("//", self.i):
                j = t.find("\n", self.i)
                self.i = n if j < 0 else j + 1
            else:
                break

    def starts_obfuscated(self) -> bool:
        t, j = self.text, self.i + 1
        if j < len(t) and t[j] in "\"'":
            return True
        if j + 1 < len(t) and t[j] == "@" and t[j + 1] in "\"'":
            return True
        return t.startswith("```", j) or t.startswith("~~~", j)

    def read_string(self) -> str:
        t, n = self.text, len(self.text)
        if t.startswith("```", self.i) or t.startswith("~~~", self.i):
            return self.read_multiline()
        verbatim = t[self.i] == "@"
        if verbatim:
            self.i += 1
        quote = t[self.i]
        start = self.i
        self.i += 1
        out: list[str] = []
        while True:
            if self.i >= n or t[self.i] in "\r\n":
                raise self.error("Unterminated string literal", start)
            c = t[self.i]
            if verbatim:
                if c == quote:
                    if self.i + 1 < n and t[self.i + 1] == quote:
                        out.append(quote)
                        self.i += 2
                        continue
                    self.i += 1
                    return "".join(out)
                out.append(c)
                self.i += 1
                continue
            if c == quote:
                self.i += 1
                return "".join(out)
            if c == "\\":
                self.i += 1
                if self.i >= n:
                    raise self.error("Unterminated string literal", start)
                e = t[self.i]
                if e in "uUx":
                    width = {"u": 4, "U": 8, "x": 2}[e]
                    hexdigits = t[self.i + 1:self.i + 1 + width]
                    if len(hexdigits) != width or not all(h in "0123456789abcdefABCDEF"
                                                          for h in hexdigits):
                        raise self.error(f"Invalid escape sequence '\\{e}{hexdigits}'", self.i - 1)
                    out.append(chr(int(hexdigits, 16)))
                    self.i += 1 + width
                elif e in "01234567" and t[self.i:self.i + 3].isdigit() and all(
                        d in "01234567" for d in t[self.i:self.i + 3]):
                    out.append(chr(int(t[self.i:self.i + 3], 8)))
                    self.i += 3
                elif e in _ESCAPES:
                    out.append(_ESCAPES[e])
                    self.i += 1
                else:
                    raise self.error(f"Invalid escape sequence '\\{e}'", self.i - 1)
                continue
            out.append(c)
            self.i += 1

    def read_multiline(self) -> str:
        fence = self.text[self.i:self.i + 3]
        start = self.i
        self.i += 3
        end = self.text.find(fence, self.i)
        if end < 0:
            raise self.error("Unterminated multi-line string literal", start)
        value = self.text[self.i:end]
        self.i = end + 3
        return value

    def read_number(self, start: int) -> None:
        t = self.text
        m = _HEX.match(t, self.i)
        if m:
            self.i = m.end()
            self.emit(Kind.LONG, start, int(m.group(0), 16))
            return
        m = _NUM.match(t, self.i)
        assert m
        num = m.group(0)
        # "1..3" is 1 .. 3, not 1. followed by .3
        if num.endswith(".") and t.startswith("..", m.end() - 1):
            num = num[:-1]
        self.i = start + len(num)
        g = _GUID.match(t, start)
        if g:
            self.i = g.end()
            self.emit(Kind.GUID, start, g.group(0).lower())
            return
        w = _WORD_AFTER_NUM.match(t, self.i)
        if w:
            unit = w.group(0)
            if unit in TICKS_PER_UNIT:
                self.i = w.end()
                self.emit(Kind.TIMESPAN, start, round(float(num) * TICKS_PER_UNIT[unit]))
                return
            g = _GUID.match(t, start)
            if g:
                self.i = g.end()
                self.emit(Kind.GUID, start, g.group(0).lower())
                return
            raise self.error(f"Invalid number or timespan literal '{num}{unit}'", start)
        g = _GUID.match(t, start)
        if g:
            self.i = g.end()
            self.emit(Kind.GUID, start, g.group(0).lower())
            return
        if any(ch in num for ch in ".eE"):
            self.emit(Kind.REAL, start, float(num))
        else:
            self.emit(Kind.LONG, start, int(num))

    def read_word(self, start: int) -> None:
        t, n = self.text, len(self.text)
        g = _GUID.match(t, start)
        if g:
            self.i = g.end()
            self.emit(Kind.GUID, start, g.group(0).lower())
            return
        m = _IDENT.match(t, self.i)
        assert m
        word = m.group(0)
        self.i = m.end()
        # hyphenated operator names: project-away, mv-expand, ...
        while self.i < n and t[self.i] == "-":
            m2 = _IDENT.match(t, self.i + 1)
            if not m2:
                break
            joined = f"{word}-{m2.group(0)}"
            if joined in HYPHENATED or any(h.startswith(joined + "-") for h in HYPHENATED):
                word = joined
                self.i = m2.end()
            else:
                break
        if word == "in" and self.i < n and t[self.i] == "~":
            self.i += 1
            self.emit(Kind.OP, start)
            return
        if word in OPAQUE_CALLS:
            j = self.i
            while j < n and t[j] in " \t":
                j += 1
            if j < n and t[j] == "(":
                close = t.find(")", j)
                if close < 0:
                    raise self.error(f"Missing ')' after '{word}('", j)
                self.i = close + 1
                self.emit(Kind.OPAQUE, start, (word, t[j + 1:close].strip()))
                return
        self.emit(Kind.IDENT, start, word)


def tokenize(text: str) -> list[Token]:
    """Lex ``text``; raises :class:`KqlSyntaxError` with the position of the first bad token."""
    return Lexer(text).run()
