"""Input checks shared by every storage: bad input raises before any SQL runs.

Each check raises `InvalidInputError` (a `ValueError`) whose message names the
field, and returns the value unchanged when it is valid. The database
constraints are the second line of defence, not the first.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Collection
from datetime import datetime
from typing import Any

from ..errors import InvalidInputError

MEMORY_TYPES: tuple[str, ...] = (
    "session_metadata", "message_user", "message_assistant", "message_system",
    "context", "action", "issue", "decision", "log",
)
MESSAGE_ROLES: tuple[str, ...] = ("user", "assistant", "system")
ATOM_TYPES: tuple[str, ...] = ("concept", "procedure", "specification", "pattern", "fault", "reference")

MAX_ID_LENGTH = 255  # session ids, user ids, atom ids, setting keys, categories
MAX_TEXT_LENGTH = 1_000_000  # any other string, including those nested in JSON content
MAX_JSON_DEPTH = 64
MAX_LIMIT = 2**63 - 1  # a limit is bound as a PostgreSQL bigint
MAX_INT_BITS = 14_000  # about 4200 digits: Python converts at most 4300 to text (json.dumps, repr)
REAL_MIN = 1.1754943508222875e-38  # the smallest normal PostgreSQL `real`; a smaller non-zero value underflows
TSVECTOR_MAX_BYTES = 1_048_575  # PostgreSQL's MAXSTRPOS: lexemes plus positions of one tsvector

_MEMORY_TYPE_SET = frozenset(MEMORY_TYPES)
_ROLE_SET = frozenset(MESSAGE_ROLES)


def _describe(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _string_problem(value: str, max_length: int) -> str | None:
    """Return what is wrong with a string, or None: too long, a NUL byte, a lone surrogate."""
    if len(value) > max_length:
        return f"is {len(value)} characters long; the limit is {max_length}"
    if "\x00" in value:
        return "contains a NUL byte (\\x00), which PostgreSQL cannot store"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "is not valid Unicode (it contains a lone surrogate)"
    return None


def check_text(value: object, field: str, *, max_length: int = MAX_TEXT_LENGTH, allow_empty: bool = True) -> str:
    """Return `value` if it is a storable string, else raise `InvalidInputError` naming `field`."""
    if not isinstance(value, str):
        raise InvalidInputError(f"{field} must be a string, not {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise InvalidInputError(f"{field} must not be empty or whitespace")
    problem = _string_problem(value, max_length)
    if problem:
        raise InvalidInputError(f"{field} {problem}")
    return value


def check_optional_text(value: object, field: str, *, max_length: int = MAX_TEXT_LENGTH) -> str | None:
    """Return None or a storable string."""
    return None if value is None else check_text(value, field, max_length=max_length)


def check_id(value: object, field: str) -> str:
    """Return `value` if it is a valid identifier: a non-blank string of at most 255 characters, no control characters.

    Control characters (newline, tab, escape, DEL, C1 codes...) would forge log
    lines and terminal output wherever the id is shown, so they are refused.
    """
    if isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH and value.isascii() and value.isprintable() \
            and not value.isspace():
        return value  # the common case, checked cheaply
    value = check_text(value, field, max_length=MAX_ID_LENGTH, allow_empty=False)
    bad = next((ch for ch in value if unicodedata.category(ch) == "Cc"), None)
    if bad is not None:
        raise InvalidInputError(f"{field} contains the control character {bad!r}; identifiers must be printable")
    return value


def check_optional_id(value: object, field: str) -> str | None:
    """Return None or a valid identifier."""
    return None if value is None else check_id(value, field)


def check_choice(value: object, choices: Collection[str], field: str) -> str:
    """Return `value` if it is one of `choices`."""
    if not isinstance(value, str) or value not in choices:
        allowed = ", ".join(sorted(choices))
        raise InvalidInputError(f"{field} must be one of {allowed}; got {_describe(value)}")
    return value


def check_memory_type(value: object, field: str = "memory_type") -> str:
    """Return `value` if it is one of `MEMORY_TYPES`."""
    if value.__class__ is str and value in _MEMORY_TYPE_SET:
        return value
    return check_choice(value, _MEMORY_TYPE_SET, field)


def check_role(value: object, field: str) -> str:
    """Return `value` if it is one of `MESSAGE_ROLES`."""
    if value.__class__ is str and value in _ROLE_SET:
        return value
    return check_choice(value, _ROLE_SET, field)


def check_limit(value: object, field: str = "limit") -> int:
    """Return `value` if it is a positive int that fits a bigint (bool is refused)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(f"{field} must be a positive integer, not {type(value).__name__}")
    if value <= 0:
        raise InvalidInputError(f"{field} must be a positive integer; got {value}")
    if value > MAX_LIMIT:
        raise InvalidInputError(f"{field} must be at most {MAX_LIMIT} (a bigint); got {value}")
    return value


def check_timestamp(value: object, field: str) -> datetime:
    """Return `value` if it is a timezone-aware datetime."""
    if not isinstance(value, datetime):
        raise InvalidInputError(f"{field} must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInputError(f"{field} must be timezone-aware (for example datetime.now(timezone.utc))")
    return value


def check_json_object(value: object, field: str) -> dict[str, Any]:
    """Return `value` if it is a dict PostgreSQL can store as jsonb, checked all the way down.

    Refused: a non-dict, non-string keys, strings with NUL bytes or lone surrogates or
    over MAX_TEXT_LENGTH characters, NaN and infinities, values JSON cannot represent,
    and nesting deeper than MAX_JSON_DEPTH.
    """
    if not isinstance(value, dict):
        raise InvalidInputError(f"{field} must be a dict, not {type(value).__name__}")
    if value:
        try:
            _walk(value, 0)
        except _Bad as bad:
            path = "".join(f"[{key!r}]" for key in reversed(bad.path))
            raise InvalidInputError(f"{field}{path} {bad.reason}") from None
    return value


def check_optional_json_object(value: object, field: str) -> dict[str, Any]:
    """Return `{}` for None, else `check_json_object(value)`."""
    return {} if value is None else check_json_object(value, field)


class _Bad(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path: list[object] = []


def _walk(value: Any, depth: int) -> None:
    """Raise `_Bad` (carrying the path to the bad value) if `value` is not storable JSON.

    Scalars inside a container are checked inline, without a call each: this runs
    over every message's metadata on every save.
    """
    kind = value.__class__
    if kind is dict or kind is list or kind is tuple:
        if depth >= MAX_JSON_DEPTH:
            raise _Bad(f"nests deeper than {MAX_JSON_DEPTH} levels")
        is_dict = kind is dict
        for key, item in (value.items() if is_dict else enumerate(value)):
            if is_dict and not (key.__class__ is str and key.isascii() and len(key) <= MAX_TEXT_LENGTH
                                and "\x00" not in key):
                if not isinstance(key, str):
                    raise _Bad(f"has a key {_describe(key)} of type {type(key).__name__}; JSON keys must be strings")
                problem = _string_problem(key, MAX_TEXT_LENGTH)
                if problem:
                    raise _Bad(f"has a key that {problem}")
            item_kind = item.__class__
            if item_kind is str:
                if item.isascii() and len(item) <= MAX_TEXT_LENGTH and "\x00" not in item:
                    continue
            elif item is None or item_kind is bool or (item_kind is int and item.bit_length() <= MAX_INT_BITS):
                continue
            elif item_kind is float and math.isfinite(item):
                continue
            try:
                _walk(item, depth + 1)
            except _Bad as bad:
                bad.path.append(key)
                raise
        return
    if kind is str:
        problem = _string_problem(value, MAX_TEXT_LENGTH)
        if problem:
            raise _Bad(problem)
        return
    if value is None or kind is bool:
        return
    if kind is int:
        check_int_size(value)
        return
    if kind is float:
        if not math.isfinite(value):
            raise _Bad(f"is {value}, which JSON cannot represent")
        return
    if isinstance(value, dict):  # subclasses: checked as their plain equivalent
        _walk(dict(value), depth)
        return
    if isinstance(value, (list, tuple)):
        _walk(list(value), depth)
        return
    if isinstance(value, str):  # e.g. StrEnum
        _walk(str(value), depth)
        return
    if isinstance(value, bool):
        return
    if isinstance(value, int):  # e.g. IntEnum
        _walk(int(value), depth)
        return
    if isinstance(value, float):
        _walk(float(value), depth)
        return
    raise _Bad(f"is a {type(value).__name__}, which is not JSON (use str, int, float, bool, None, list or dict)")


def check_int_size(value: int) -> None:
    """Raise `_Bad` for an integer too large to write as JSON or text (more than about 4200 digits)."""
    if value.bit_length() > MAX_INT_BITS:
        raise _Bad(f"is an integer of about {int(value.bit_length() * 0.30103)} digits; the limit is "
                   f"{int(MAX_INT_BITS * 0.30103)} digits")


def check_number(value: object, field: str) -> int | float:
    """Return `value` if it is a finite float or an int of at most ~4200 digits (bool is refused).

    Raises `InvalidInputError` naming `field` for NaN, infinities, huge integers and non-numbers.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInputError(f"{field} must be a number, not {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidInputError(f"{field} is {value}; only finite numbers can be stored")
    if isinstance(value, int):
        try:
            check_int_size(value)
        except _Bad as bad:
            raise InvalidInputError(f"{field} {bad.reason}") from None
    return value


def check_real(value: object, field: str) -> float:
    """Return `value` as a float PostgreSQL can store as `real`: finite, and 0 or at least `REAL_MIN` in size.

    Raises `InvalidInputError` naming `field` (a smaller non-zero value would underflow in the database).
    """
    number = float(check_number(value, field))
    if number != 0 and abs(number) < REAL_MIN:
        raise InvalidInputError(f"{field} is {value!r}, too close to 0 for a PostgreSQL real (use 0, or at least "
                                f"{REAL_MIN:.2e})")
    if abs(number) > 3.4028234663852886e38:
        raise InvalidInputError(f"{field} is {value!r}, too large for a PostgreSQL real")
    return number


# Only ASCII whitespace splits chunks, and every non-ASCII character counts as a letter: PostgreSQL's parser
# does so in the C locale, so the estimate stays an upper bound in any locale.
_CHUNK = re.compile(r"[^ \t\n\r\f\v]+")
_WORD = re.compile(r"[\w\u0080-\U0010ffff]+")
_LEAD, _TRAIL = "(\"'[{<", ".,;:!?)\"']}>"  # never part of a lexeme; "-", "+", "/" and "@" may be
_MAX_LEXEME = 2047  # longer words are left out of a tsvector
_MAX_POSITIONS = 256  # per lexeme
_PLAIN_CHARS = TSVECTOR_MAX_BYTES // 40  # below this many characters no text can reach the limit (see below)


def tsvector_bytes(*texts: str) -> int:
    """Return an upper bound of the size `to_tsvector` gives `texts` together (lexemes plus positions).

    Mirrors what PostgreSQL's parser can make of the text without running it:
    every word (run of letters, digits, underscores) is a lexeme, and every
    compound (a hyphenated word, e-mail, URL, path or version) may also give up
    to three lexemes its own length (whole, host, path). Per distinct lexeme:
    its UTF-8 bytes, one alignment byte, a 2-byte count and 2 bytes per
    position (at most 256). Stemming and stop words only make the real one smaller.
    """
    if sum(len(t) for t in texts) < _PLAIN_CHARS:  # 4 bytes a character, 10x for the worst compounds
        return 0
    total = 0
    for text in texts:
        words: dict[str, int] = {}
        compounds: dict[str, int] = {}
        for chunk in _CHUNK.findall(text.lower()):
            core = chunk.lstrip(_LEAD).rstrip(_TRAIL)
            parts = _WORD.findall(core)
            for part in parts:
                words[part] = words.get(part, 0) + 1
            if len(parts) > 1 or (parts and parts[0] != core):
                compounds[core] = compounds.get(core, 0) + 1
        total += sum(_entry(w, n) for w, n in words.items())
        total += 3 * sum(_entry(c, n) for c, n in compounds.items())
    return total


def _entry(lexeme: str, count: int) -> int:
    size = len(lexeme.encode("utf-8", "surrogatepass"))
    return 0 if size > _MAX_LEXEME else size + 3 + 2 * min(count, _MAX_POSITIONS)


def check_tsvector(field: str, *texts: str) -> None:
    """Raise `InvalidInputError` naming `field` when `texts` could make a tsvector over PostgreSQL's 1 MiB limit."""
    size = tsvector_bytes(*texts)
    if size > TSVECTOR_MAX_BYTES:
        raise InvalidInputError(f"{field} has too many distinct words to index: its search vector could take "
                                f"{size} bytes; PostgreSQL's limit is {TSVECTOR_MAX_BYTES} (split the text "
                                "into several atoms)")


def json_object_ok(value: object) -> bool:
    """Return whether `check_json_object(value)` would pass (a fast predicate, no message built)."""
    if value.__class__ is not dict:
        return False
    if value:
        try:
            _walk(value, 0)
        except _Bad:
            return False
    return True
