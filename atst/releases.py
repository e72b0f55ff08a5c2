"""The registry of the released ATST checkpoints: names, where each is published, licence, citation, manifest.

    release("atstframe_base").source        # where it is downloaded from ($ATST_CHECKPOINT_URLS overrides)
    release("atstframe_base").manifest()    # [(tensor name, shape, dtype), ...] of its state_dict

`$ATST_CHECKPOINT_URLS` is a JSON object {name: URL} (http:// or https://) that replaces the published locations,
for mirrors and tests. Nothing here touches the network or torch.
"""
from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

URLS_ENV = "ATST_CHECKPOINT_URLS"
MANIFEST_DIR = Path(__file__).resolve().parent / "manifests"
DRIVE_PAGE = "https://drive.google.com/file/d/{id}/view"
# The official ATST README links the ATST-Clip files on this object store (its `[small.ckpt](...)` and
# `[base.ckpt](...)` links); ATST-Frame's README links Google Drive files by id.
OBJECT_STORE = "https://checkpointstorage.oss-cn-beijing.aliyuncs.com/atst"
FRAME_README = "https://github.com/Audio-WestlakeU/audiossl/tree/main/audiossl/methods/atstframe"
CLIP_README = "https://github.com/Audio-WestlakeU/audiossl/tree/main/audiossl/methods/atst"
LICENCE = "CC-BY-4.0 (the weights; the official code is MIT)"
FRAME_CITATION = ("X. Li, N. Shao and X. Li, \"Self-supervised audio teacher-student transformer for both "
                  "clip-level and frame-level tasks\", IEEE/ACM TASLP 32:1336-1351, 2024 (arXiv:2306.04186)")
CLIP_CITATION = ("X. Li and X. Li, \"ATST: Audio representation learning with teacher-student transformer\", "
                 "Interspeech 2022, pp. 4172-4176 (arXiv:2204.12076); named ATST-Clip in " + FRAME_CITATION)

ManifestEntry = Tuple[str, Tuple[int, ...], str]


class UnknownReleaseError(FileNotFoundError):
    """A name that is neither a file nor a released checkpoint (a FileNotFoundError: no such checkpoint)."""


@dataclass(frozen=True)
class Release:
    """One released checkpoint. `drive_id` is set for files published on Google Drive, `url` for the others."""

    name: str
    family: str  # "frame" (ATST-Frame) or "clip" (ATST-Clip)
    arch: str  # "small" or "base"
    readme: str  # the official page that links the file
    citation: str
    drive_id: Optional[str] = None
    url: Optional[str] = None
    licence: str = LICENCE

    @property
    def filename(self) -> str:
        return f"{self.name}.ckpt"

    @property
    def official_location(self) -> str:
        """The published location, for people: a Google Drive page or the object-store URL."""
        return DRIVE_PAGE.format(id=self.drive_id) if self.drive_id else str(self.url)

    @property
    def override(self) -> Optional[str]:
        """The URL `$ATST_CHECKPOINT_URLS` gives for this name, if any."""
        return url_overrides().get(self.name)

    @property
    def manifest_path(self) -> Path:
        return MANIFEST_DIR / f"{self.name}.json"

    def manifest(self) -> List[ManifestEntry]:
        """(tensor name, shape, dtype name) of every `state_dict` entry of the released file, in file order."""
        return read_manifest(self.manifest_path)

    def encoder_parameters(self) -> int:
        """Number of values in the teacher encoder (the one every door loads)."""
        total = 0
        for key, shape, _ in self.manifest():
            if key.startswith("model.teacher.encoder."):
                count = 1
                for size in shape:
                    count *= size
                total += count
        return total


RELEASES: Dict[str, Release] = {r.name: r for r in (
    Release("atstframe_small", "frame", "small", FRAME_README, FRAME_CITATION,
            drive_id="1xZoOTuxV415icYONYbeFQzgrmJQf4a4B"),
    Release("atstframe_base", "frame", "base", FRAME_README, FRAME_CITATION,
            drive_id="1bGJSZWlAIIJ6GL5Id5dW0PTB72DL-QDQ"),
    Release("atstclip_small", "clip", "small", CLIP_README, CLIP_CITATION, url=f"{OBJECT_STORE}/small.ckpt"),
    Release("atstclip_base", "clip", "base", CLIP_README, CLIP_CITATION, url=f"{OBJECT_STORE}/base.ckpt"),
)}


def release(name: str) -> Release:
    """The registered release `name`; an unknown name raises `UnknownReleaseError` listing the names."""
    try:
        return RELEASES[name]
    except KeyError:
        raise UnknownReleaseError(f"{name!r} is neither a checkpoint file nor a released checkpoint name; "
                                  f"released checkpoints: {', '.join(RELEASES)} (or pass a file's path)") from None


@functools.lru_cache(maxsize=None)
def read_manifest(path: Path) -> List[ManifestEntry]:
    """The `state_dict` entries of a manifest file: [(name, shape, dtype name)]."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return [(str(key), tuple(int(size) for size in shape), str(dtype)) for key, shape, dtype in data["state_dict"]]


def url_overrides() -> Dict[str, str]:
    """`$ATST_CHECKPOINT_URLS` parsed: {release name: http(s) URL}; anything else is refused, naming the variable."""
    text = os.environ.get(URLS_ENV, "").strip()
    if not text:
        return {}
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"${URLS_ENV} must be a JSON object {{name: URL}}: {error}") from None
    if not isinstance(parsed, dict):
        raise ValueError(f"${URLS_ENV} must be a JSON object {{name: URL}}, got {type(parsed).__name__}")
    for name, url in parsed.items():
        release(name)  # an unknown name is refused with the list of names
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError(f"${URLS_ENV}[{name!r}] must be an http:// or https:// URL, got {url!r}")
    return dict(parsed)


__all__ = ["RELEASES", "Release", "URLS_ENV", "UnknownReleaseError", "read_manifest", "release", "url_overrides"]
