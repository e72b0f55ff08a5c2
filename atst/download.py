"""Fetch one file over HTTP(S) or from Google Drive into a staging name, resumably, with a progress bar.

gdown does the transfer for both kinds of location: Google Drive's large-file confirmation page, HTTP Range
resumption from a `<staging><8 random characters>.part` file beside the staging name (kept when a transfer breaks,
picked up by the next call), retries of transient failures and the tqdm progress bar. This module turns its
failures into `DownloadError`s a user can act on; what the bytes are is checked by the caller.
"""
from __future__ import annotations

import contextlib
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

RETRIES = 3  # further attempts after a transient network failure, each resuming the transfer
TIMEOUT_S = (30.0, 120.0)  # seconds to connect, and to wait for the next bytes
HTML_MARKS = (b"<!doctype html", b"<html")


class DownloadError(OSError):
    """A file could not be fetched, or the server sent something other than the file; the message says what to
    do (including how to download by hand)."""


@dataclass(frozen=True)
class Source:
    """Where a file comes from: a Google Drive file id or an http(s) URL."""

    drive_id: Optional[str] = None
    url: Optional[str] = None

    def __post_init__(self) -> None:
        if (self.drive_id is None) == (self.url is None):
            raise ValueError("a Source is either a Google Drive id or a URL")

    def __str__(self) -> str:
        return f"Google Drive file {self.drive_id}" if self.drive_id else str(self.url)

    @property
    def host(self) -> str:
        return "drive.google.com" if self.drive_id else (urllib.parse.urlsplit(str(self.url)).netloc or str(self.url))


def partial_files(staging: Path) -> List[Path]:
    """The `.part` files gdown keeps beside `staging` for a transfer that can be resumed."""
    if not staging.parent.is_dir():
        return []
    return sorted(p for p in staging.parent.iterdir()
                  if p.name.startswith(staging.name) and p.name.endswith(".part")
                  and len(p.name) == len(staging.name) + 8 + len(".part"))


def _gdown_download(source: Source, staging: Path, progress: bool) -> None:
    import gdown

    where = {"id": source.drive_id} if source.drive_id else {"url": source.url}
    # use_cookies=False: nothing is read from or written to ~/.cache/gdown
    gdown.download(output=str(staging), quiet=not progress, resume=True, use_cookies=False, timeout=TIMEOUT_S,
                   retries=RETRIES, **where)


def fetch(source: Source, staging: Path, progress: bool = True, by_hand: str = "") -> Path:
    """Download `source` to `staging` (resuming a partial transfer of an earlier call); returns `staging`.

    `by_hand` is appended to every error: how to get the file without this function. An HTML page instead of the
    file is removed and refused. Raises `DownloadError`.
    """
    import requests
    from gdown.exceptions import DownloadError as GdownDownloadError
    from gdown.exceptions import FileURLRetrievalError

    staging.parent.mkdir(parents=True, exist_ok=True)
    try:
        try:
            _gdown_download(source, staging, progress)
        except GdownDownloadError as error:
            if "did not honor the requested byte range" not in str(error):
                raise
            # a server without Range support cannot resume: start again from the first byte
            for part in partial_files(staging):
                part.unlink()
            _gdown_download(source, staging, progress)
    except FileURLRetrievalError as error:
        raise DownloadError(
            f"Google Drive did not hand out {source} (its download-quota page or a permission page came instead: "
            f"{_first_line(error)}). Try again later. {by_hand}") from None
    except requests.exceptions.HTTPError as error:
        raise DownloadError(f"{source}: the server answered {_first_line(error)}. {by_hand}") from None
    except (GdownDownloadError, requests.exceptions.RequestException) as error:
        parts = [part for part in partial_files(staging) if part.stat().st_size]
        cause = error.__cause__ or error
        if not parts and isinstance(cause, (requests.exceptions.ConnectionError, requests.exceptions.Timeout)):
            raise DownloadError(f"could not reach {source.host} (no network, or the host is down: "
                                f"{type(cause).__name__}). {by_hand}") from None
        kept = f"; the {_size(parts[0])} received so far are kept in {parts[0]} and the next call resumes from " \
               f"there" if parts else ""
        raise DownloadError(f"the download of {source} was interrupted ({_first_line(error)}){kept}. {by_hand}") \
            from None
    if looks_like_html(staging):
        with contextlib.suppress(FileNotFoundError):
            staging.unlink()
        raise DownloadError(
            f"{source} sent a web page (HTML), not the checkpoint: Google Drive's quota or virus-scan page, a "
            f"login page or an error page. Nothing was kept. {by_hand}")
    return staging


def looks_like_html(path: Path) -> bool:
    """True when the file starts (after blanks and a UTF-8 byte-order mark) like an HTML document."""
    with open(path, "rb") as handle:
        head = handle.read(512)
    return head.lstrip(b"\xef\xbb\xbf \t\r\n").lower().startswith(HTML_MARKS)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _size(path: Path) -> str:
    return f"{path.stat().st_size / 1e6:.1f} MB"


__all__ = ["DownloadError", "Source", "fetch", "looks_like_html", "partial_files"]
