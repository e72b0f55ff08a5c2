"""SUPERB task configs shipped with the package (the s3prl wheel has none).

Each config is written for a 40 ms upstream frame rate; data paths are placeholders that users override with
`-o "config.downstream_expert.datarc.KEY=VALUE"`.
"""
from __future__ import annotations

from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
TASKS = {  # SUPERB name -> s3prl downstream
    "KS": "speech_commands",
    "SID": "voxceleb1",
    "IC": "fluent_commands",
    "ER": "emotion",
    "ASR": "asr",
}


def available_configs() -> list:
    """Names of the shipped configs (file stems)."""
    return sorted(path.stem for path in CONFIG_DIR.glob("*.yaml"))


def config_path(name: str) -> Path:
    """Path of a shipped config by downstream name (`speech_commands`), SUPERB name (`KS`) or file name."""
    stem = TASKS.get(str(name).upper(), str(name))
    stem = stem[: -len(".yaml")] if stem.endswith(".yaml") else stem
    path = CONFIG_DIR / f"{stem}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"no shipped config named {name!r}; available: {available_configs()} "
                                f"(or SUPERB names {sorted(TASKS)})")
    return path
