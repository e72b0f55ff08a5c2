"""Write the character dictionary s3prl's `asr` downstream needs (the s3prl wheel does not ship one).

Format: one `<symbol> <count>` per line (fairseq dictionary). Symbols: `|` (word boundary), A-Z and the
apostrophe, the characters of upper-cased LibriSpeech transcripts. The counts only order the symbols.

    python -m s3prl_upstream.asr_dict OUT_PATH
"""
from __future__ import annotations

import string
import sys
from pathlib import Path
from typing import Union

SYMBOLS = ["|"] + list(string.ascii_uppercase) + ["'"]


def write_char_dict(path: Union[str, Path]) -> Path:
    """Write the dictionary to `path` (parents created). Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"{symbol} {len(SYMBOLS) - rank}" for rank, symbol in enumerate(SYMBOLS)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def main(argv: list = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise SystemExit("usage: python -m s3prl_upstream.asr_dict OUT_PATH")
    print(write_char_dict(argv[0]))


if __name__ == "__main__":
    main()
