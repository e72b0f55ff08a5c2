"""The one boolean-flag parser for every command line and option string of the project."""
from __future__ import annotations

import argparse

TRUE_WORDS = ("1", "true", "yes", "y", "t", "on")
FALSE_WORDS = ("0", "false", "no", "n", "f", "off")


class BoolFlagError(ValueError, argparse.ArgumentTypeError):
    """A text that is not a boolean; argparse shows its message as is (it is an ArgumentTypeError)."""


def parse_bool(value: object, name: str = "") -> bool:
    """`True`/`False` from a bool or one of the words `true/false, yes/no, y/n, t/f, on/off, 1/0` (any case).

    Usable directly as an argparse `type=`. Raises `BoolFlagError` (a ValueError) naming `name` and the accepted
    words for anything else; nothing else (numbers other than 0/1, empty text, None) is coerced.
    """
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower() if isinstance(value, (str, int)) else None
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    prefix = f"{name} must be" if name else "expected"
    raise BoolFlagError(f"{prefix} a boolean ({'/'.join(TRUE_WORDS[:2])} or {'/'.join(FALSE_WORDS[:2])}; also "
                        f"yes/no, on/off), got {value!r}")
