"""Subscription topics: which published items a daemon wants. Pure.

A pattern is an image name with `*` wildcards (`registry:5000/library/*`),
or a URL prefix (anything with `://`, e.g. `https://files.example.com/models/`),
which may hold `*` too. `*` matches any run of characters, `/` included; there
is no other wildcard, no escape and no user regex, so matching is bounded:
the pattern is cut at its stars into literal pieces, the first must start
the text, the last must end it, and the ones between are found left to right,
each at its first place after the previous one (taking the earliest place is
never worse for the pieces after it). That is one pass over the text per
piece, with the piece count bounded below, whatever the pattern looks like.

An image publication is matched by its name, `REGISTRY/REPOSITORY` (as its
manifest URL names the registry host and port), and by that name with its tag
or digest (`REGISTRY/REPOSITORY:TAG`); a file by its URL without scheme and
query (`files.example/models/a.bin`), so `*` takes everything. A URL pattern
matches the start of the published URL (an image's is its manifest URL).
"""
from typing import List, NamedTuple, Sequence

from dfly.errors import BadRequest

MAX_PATTERN_LEN = 512
MAX_STARS = 16
MAX_PATTERNS = 32


class Pattern(NamedTuple):
    text: str
    is_url: bool


def glob_match(pattern: str, text: str) -> bool:
    """Does `text` match `pattern` as a whole (`*`: any run of characters)?"""
    pieces = pattern.split("*")
    if len(pieces) == 1:
        return pattern == text
    first, last, middle = pieces[0], pieces[-1], pieces[1:-1]
    if len(first) + len(last) > len(text) or not text.startswith(first) or not text.endswith(last):
        return False
    at, end = len(first), len(text) - len(last)
    for piece in middle:
        if not piece:
            continue
        found = text.find(piece, at, end)
        if found < 0:
            return False
        at = found + len(piece)
    return True


def parse_pattern(text: str) -> Pattern:
    """A checked pattern; BadRequest saying what is wrong with it."""
    if not isinstance(text, str) or not text:
        raise BadRequest("a topic pattern must be a non-empty string")
    if len(text) > MAX_PATTERN_LEN:
        raise BadRequest("topic pattern over %d characters: %r..." % (MAX_PATTERN_LEN, text[:40]))
    if any(c.isspace() or not c.isprintable() or c == "," for c in text):
        raise BadRequest("topic pattern %r: no spaces, commas or control characters" % text[:80])
    if text.count("*") > MAX_STARS:
        raise BadRequest("topic pattern %r: at most %d '*'" % (text[:80], MAX_STARS))
    return Pattern(text, "://" in text)


def parse_patterns(texts: Sequence[str]) -> List[Pattern]:
    if len(texts) > MAX_PATTERNS:
        raise BadRequest("at most %d topic patterns, got %d" % (MAX_PATTERNS, len(texts)))
    out = []
    for text in texts:
        pattern = parse_pattern(text)
        if pattern not in out:
            out.append(pattern)
    return out


def split_topics(value: str) -> List[str]:
    """The patterns of a `topics=` query value (comma separated)."""
    return [t for t in value.split(",") if t]


def matches(pattern: Pattern, url: str, names: Sequence[str]) -> bool:
    """Does `pattern` take the item published as `url` (an image also by its `names`)?"""
    if pattern.is_url:
        return glob_match(pattern.text + "*", url)
    return any(glob_match(pattern.text, name) for name in names)


def any_matches(patterns: Sequence[Pattern], url: str, names: Sequence[str]) -> bool:
    return any(matches(p, url, names) for p in patterns)
