"""Just enough TOML to find keys in other people's files, on every Python 3.8+.

`tomllib` arrives in 3.11, and `dfly setup` must not rewrite an operator's
containerd config.toml or registries.conf anyway: it reads where things are
and inserts lines. So this is a scanner, not a loader: it walks the text once
and returns each table header and each `key = value` with its line numbers
and the value's raw text; `string_value` decodes the strings we need. Values
it does not need are skipped with their brackets, strings and comments
respected (arrays and multi-line strings may span lines). Anything it cannot
follow is a TomlError naming the line, so a file we do not understand is
refused rather than edited.
"""
import re
from dataclasses import dataclass
from typing import List, Tuple, Union

_BARE = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPES = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", '"': '"', "\\": "\\"}


class TomlError(ValueError):
    def __init__(self, line: int, message: str):
        super().__init__("line %d: %s" % (line, message))
        self.line = line


@dataclass(frozen=True)
class Header:
    path: Tuple[str, ...]
    array: bool        # [[array.of.tables]]
    line: int          # 1-based


@dataclass(frozen=True)
class Entry:
    table: Tuple[str, ...]   # the header it sits under (() before the first)
    key: Tuple[str, ...]     # dotted key parts
    raw: str                 # the value as written
    line: int
    end_line: int


Item = Union[Header, Entry]


class _Cursor:
    def __init__(self, text: str):
        self.text, self.pos, self.line = text, 0, 1

    def peek(self, n: int = 1) -> str:
        return self.text[self.pos:self.pos + n]

    def take(self, n: int = 1) -> str:
        part = self.text[self.pos:self.pos + n]
        self.line += part.count("\n")
        self.pos += n
        return part

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def blanks(self) -> None:
        while self.peek() in (" ", "\t"):
            self.take()

    def fail(self, message: str) -> TomlError:
        return TomlError(self.line, message)


def scan(text: str) -> List[Item]:
    """Headers and entries in file order; TomlError for what this scanner cannot follow."""
    cur, items, table = _Cursor(text.replace("\r\n", "\n")), [], ()
    while not cur.at_end():
        cur.blanks()
        c = cur.peek()
        if c in ("", "\n"):
            cur.take()
        elif c == "#":
            _comment(cur)
        elif c == "[":
            header = _header(cur)
            table = header.path
            items.append(header)
        else:
            start = cur.line
            key = _key(cur, "=")
            cur.take()
            cur.blanks()
            begin = cur.pos
            _value(cur)
            items.append(Entry(table, key, cur.text[begin:cur.pos].strip(), start, cur.line))
            _line_end(cur)
    return items


def _comment(cur: _Cursor) -> None:
    while cur.peek() not in ("", "\n"):
        cur.take()


def _line_end(cur: _Cursor) -> None:
    cur.blanks()
    if cur.peek() == "#":
        _comment(cur)
    if cur.peek() not in ("", "\n"):
        raise cur.fail("unexpected text after a value: %r" % cur.text[cur.pos:cur.pos + 20])


def _header(cur: _Cursor) -> Header:
    line = cur.line
    array = cur.peek(2) == "[["
    cur.take(2 if array else 1)
    path = _key(cur, "]")
    closing = "]]" if array else "]"
    if cur.peek(len(closing)) != closing:
        raise cur.fail("table header not closed with %s" % closing)
    cur.take(len(closing))
    _line_end(cur)
    return Header(path, array, line)


def _key(cur: _Cursor, until: str) -> Tuple[str, ...]:
    parts = []
    while True:
        cur.blanks()
        c = cur.peek()
        if c == '"':
            parts.append(_basic_string(cur))
        elif c == "'":
            parts.append(_literal_string(cur))
        else:
            m = _BARE.match(cur.text, cur.pos)
            if not m:
                raise cur.fail("expected a key, found %r" % cur.text[cur.pos:cur.pos + 20])
            parts.append(cur.take(m.end() - m.start()))
        cur.blanks()
        if cur.peek() == ".":
            cur.take()
            continue
        if cur.peek() != until:
            raise cur.fail("expected %r after key %s" % (until, ".".join(parts)))
        return tuple(parts)


def _value(cur: _Cursor) -> None:
    c = cur.peek()
    if cur.peek(3) in ('"""', "'''"):
        _multiline_string(cur)
    elif c == '"':
        _basic_string(cur)
    elif c == "'":
        _literal_string(cur)
    elif c in ("[", "{"):
        _bracketed(cur)
    else:
        m = re.compile(r"[^\s#,\]}]+").match(cur.text, cur.pos)
        if not m:
            raise cur.fail("a key without a value")
        cur.take(m.end() - m.start())


def _bracketed(cur: _Cursor) -> None:
    """An array or inline table, nested, strings and comments inside (arrays span lines)."""
    start, depth = cur.line, 0
    while True:
        c = cur.peek()
        if c == "":
            raise TomlError(start, "array or inline table never closed")
        if c in ("[", "{"):
            depth += 1
            cur.take()
        elif c in ("]", "}"):
            depth -= 1
            cur.take()
            if depth == 0:
                return
        elif c == "#":
            _comment(cur)
        elif cur.peek(3) in ('"""', "'''"):
            _multiline_string(cur)
        elif c == '"':
            _basic_string(cur)
        elif c == "'":
            _literal_string(cur)
        else:
            cur.take()


def _basic_string(cur: _Cursor) -> str:
    cur.take()
    out = []
    while True:
        if cur.peek() in ("", "\n"):
            raise cur.fail("string not closed on its line")
        c = cur.take()
        if c == '"':
            return "".join(out)
        if c == "\\":
            e = cur.take()
            if e in _ESCAPES:
                out.append(_ESCAPES[e])
            elif e in ("u", "U"):
                digits = cur.take(4 if e == "u" else 8)
                try:
                    out.append(chr(int(digits, 16)))
                except ValueError:
                    raise cur.fail("bad unicode escape \\%s%s" % (e, digits))
            else:
                raise cur.fail("bad escape \\%s in a string" % e)
        else:
            out.append(c)


def _literal_string(cur: _Cursor) -> str:
    cur.take()
    end = cur.text.find("'", cur.pos)
    newline = cur.text.find("\n", cur.pos)
    if end < 0 or 0 <= newline < end:
        raise cur.fail("string not closed on its line")
    return cur.take(end - cur.pos + 1)[:-1]


def _multiline_string(cur: _Cursor) -> None:
    start, quote = cur.line, cur.take(3)
    while True:
        if cur.at_end():
            raise TomlError(start, "multi-line string never closed")
        if cur.peek() == "\\" and quote == '"""':
            cur.take(2)
        elif cur.peek(3) == quote:
            cur.take(3)
            while cur.peek() == quote[0]:   # up to two quotes may end the content
                cur.take()
            return
        else:
            cur.take()


def string_value(entry: Entry) -> str:
    """The decoded value of a one-line string entry; TomlError when it is not one."""
    cur = _Cursor(entry.raw)
    cur.line = entry.line
    if cur.peek() == '"' and cur.peek(3) != '"""':
        value = _basic_string(cur)
    elif cur.peek() == "'" and cur.peek(3) != "'''":
        value = _literal_string(cur)
    else:
        raise cur.fail("%s must be a string" % ".".join(entry.key))
    if not cur.at_end():
        raise cur.fail("%s must be a single string" % ".".join(entry.key))
    return value


def basic_string(text: str) -> str:
    """`text` written as a TOML basic string."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"%s"' % "".join(c if c >= " " else "\\u%04x" % ord(c) for c in escaped)
