"""Released checkpoints by name: registry, download from a loopback server (no internet), resume, verification,
cache, offline mode, and every door that takes a checkpoint."""
from __future__ import annotations

import json
import shutil
import socket
import threading
from pathlib import Path

import pytest

import atst.download
import hear_atst
from atst import CheckpointError, load_checkpoint
from atst.cli import main as atst_main
from atst.download import DownloadError
from atst.hub import OfflineError, cache_dir, resolve_checkpoint, sha256_file
from atst.releases import RELEASES, release
from atst.synthetic import write_official_checkpoint
from conftest import write_release_layout

NAME = "atstframe_small"
HTML_PAGE = b"<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head><body></body></html>"


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty cache folder in $ATST_CACHE; no URL overrides, online."""
    monkeypatch.setenv("ATST_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("ATST_OFFLINE", raising=False)
    monkeypatch.delenv("ATST_CHECKPOINT_URLS", raising=False)
    monkeypatch.delenv(hear_atst.CHECKPOINT_ENV, raising=False)
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def compact(tmp_path_factory) -> Path:
    """atstframe_small's exact tensor layout with constant weights and a 2 MB optimizer moment (`conftest`)."""
    return write_release_layout(tmp_path_factory.mktemp("release") / "small.ckpt", NAME, optimizer_mb=2)


@pytest.fixture(scope="module")
def official_small(tmp_path_factory) -> Path:
    """A random-weight ATST-Frame small written by `atst.synthetic` in the official layout, official head sizes
    (201 MB, as a released file without its optimizer state)."""
    return write_official_checkpoint(tmp_path_factory.mktemp("release") / "official_small.ckpt", arch="small",
                                     projector_hidden=4096, projector_out=256)


def point_at(monkeypatch, **urls: str) -> None:
    monkeypatch.setenv("ATST_CHECKPOINT_URLS", json.dumps(urls))


def cache_listing(folder: Path) -> list:
    return sorted(p.name for p in folder.iterdir() if p.name != f".{NAME}.lock") if folder.is_dir() else []


# ---------------------------------------------------------------------------------------------------- registry

@pytest.mark.parametrize("name", sorted(RELEASES))
def test_the_registry_manifests_equal_the_shared_fixtures(fixtures, name):
    shared = json.loads((fixtures / f"{name}_ckpt_manifest.json").read_text())["state_dict"]
    expected = [(e["key"], tuple(e["shape"]), e["dtype"]) for e in shared]
    assert release(name).manifest() == expected
    assert release(name).manifest_path.parent.name == "manifests"


def test_the_registry_names_the_official_locations_licence_and_citation():
    assert list(RELEASES) == ["atstframe_small", "atstframe_base", "atstclip_small", "atstclip_base"]
    assert release("atstframe_small").drive_id == "1xZoOTuxV415icYONYbeFQzgrmJQf4a4B"
    assert release("atstframe_base").drive_id == "1bGJSZWlAIIJ6GL5Id5dW0PTB72DL-QDQ"
    store = "https://checkpointstorage.oss-cn-beijing.aliyuncs.com/atst"
    assert release("atstclip_small").url == f"{store}/small.ckpt"
    assert release("atstclip_base").url == f"{store}/base.ckpt"
    for found in RELEASES.values():
        assert (found.family, found.arch) == tuple(found.name[4:].split("_"))
        assert "CC-BY-4.0" in found.licence
        assert ("2306.04186" if found.family == "frame" else "2204.12076") in found.citation
    assert [r.encoder_parameters() for r in RELEASES.values()] == [21_475_968, 85_419_264, 21_476_352, 85_420_032]


def test_an_unknown_name_lists_the_names(cache):
    for load in (load_checkpoint, hear_atst.load_model, resolve_checkpoint):
        with pytest.raises(FileNotFoundError, match="atstframe_bas'.*atstframe_small, atstframe_base, "
                                                    "atstclip_small, atstclip_base"):
            load("atstframe_bas")
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):  # a path stays a path
        load_checkpoint(cache / "atstframe_bas.ckpt")


@pytest.mark.parametrize("value, message", [
    ("{not json", "must be a JSON object"), ('["http://x"]', "got list"),
    ('{"atstframe_huge": "http://x/a.ckpt"}', "atstframe_huge.*released checkpoints: atstframe_small"),
    ('{"atstframe_small": "ftp://x/a.ckpt"}', "must be an http:// or https:// URL")])
def test_checkpoint_urls_are_checked(cache, monkeypatch, value, message):
    monkeypatch.setenv("ATST_CHECKPOINT_URLS", value)
    with pytest.raises(FileNotFoundError if "released" in message else ValueError, match=message):
        resolve_checkpoint(NAME)


# --------------------------------------------------------------------------------------- download and the cache

def test_download_by_name_with_a_progress_bar_then_the_cache(cache, loopback, official_small, monkeypatch, capsys):
    point_at(monkeypatch, atstframe_small=loopback.serve("mirror/small.ckpt", official_small))
    model = hear_atst.load_model(NAME)
    err = capsys.readouterr().err
    assert "atst: downloading atstframe_small" in err and "100%" in err  # the progress bar ran to the end
    assert model.family == "frame" and model.scene_embedding_size == 12 * 384
    assert loopback.requests == [("mirror/small.ckpt", None)]
    target = cache / "atstframe_small.ckpt"
    assert cache_listing(cache) == ["atstframe_small.ckpt", "atstframe_small.ckpt.sha256.json"]
    record = json.loads((cache / "atstframe_small.ckpt.sha256.json").read_text())
    assert record["sha256"] == sha256_file(official_small) and record["size"] == official_small.stat().st_size
    assert resolve_checkpoint(NAME) == target  # the second call finds the cached file: no request
    assert loopback.requests == [("mirror/small.ckpt", None)]
    assert "downloading" not in capsys.readouterr().err


def test_resume_after_the_server_drops_the_connection_half_way(cache, loopback, compact, monkeypatch):
    size = compact.stat().st_size
    point_at(monkeypatch, atstframe_small=loopback.serve("small.ckpt", compact, drop_after=3 * size // 4))
    path = resolve_checkpoint(NAME, progress=False)
    ranges = [byte_range for _, byte_range in loopback.requests]
    assert ranges[0] is None and ranges[-1] is not None and ranges[-1].startswith("bytes=")
    assert 0 < int(ranges[-1][len("bytes="):-1]) < size  # continued from the bytes it had, not from 0
    assert path.read_bytes() == compact.read_bytes()
    assert cache_listing(cache) == ["atstframe_small.ckpt", "atstframe_small.ckpt.sha256.json"]


def test_an_interrupted_download_is_resumed_by_the_next_call(cache, loopback, compact, monkeypatch):
    monkeypatch.setattr(atst.download, "RETRIES", 0)
    point_at(monkeypatch, atstframe_small=loopback.serve("small.ckpt", compact,
                                                         drop_after=3 * compact.stat().st_size // 4))
    with pytest.raises(DownloadError, match="interrupted.*kept in .*part and the next call resumes"):
        resolve_checkpoint(NAME, progress=False)
    assert not (cache / "atstframe_small.ckpt").exists()  # nothing half-downloaded under the final name
    assert [p.suffix for p in cache.iterdir() if not p.name.endswith(".lock")] == [".part"]
    path = resolve_checkpoint(NAME, progress=False)
    assert loopback.requests[-1][1] is not None and loopback.requests[-1][1] != "bytes=0-"
    assert path.read_bytes() == compact.read_bytes()
    assert cache_listing(cache) == ["atstframe_small.ckpt", "atstframe_small.ckpt.sha256.json"]


def test_a_server_without_range_support_restarts_the_interrupted_download(cache, loopback, compact, monkeypatch):
    monkeypatch.setattr(atst.download, "RETRIES", 0)
    point_at(monkeypatch, atstframe_small=loopback.serve("small.ckpt", compact, ranges=False,
                                                         drop_after=3 * compact.stat().st_size // 4))
    with pytest.raises(DownloadError, match="interrupted"):
        resolve_checkpoint(NAME, progress=False)
    assert resolve_checkpoint(NAME, progress=False).read_bytes() == compact.read_bytes()
    assert cache_listing(cache) == ["atstframe_small.ckpt", "atstframe_small.ckpt.sha256.json"]


def test_an_html_page_instead_of_the_file_is_refused(cache, loopback, tmp_path, monkeypatch):
    page = tmp_path / "quota.html"
    page.write_bytes(b"\n  " + HTML_PAGE)
    point_at(monkeypatch, atstframe_small=loopback.serve("small.ckpt", page, content_type="text/html"))
    with pytest.raises(DownloadError, match="HTML.*quota.*Nothing was kept.*by hand.*atstframe_small.ckpt"):
        resolve_checkpoint(NAME, progress=False)
    assert cache_listing(cache) == []


def test_a_file_with_a_wrong_tensor_shape_is_refused(cache, loopback, tmp_path, monkeypatch):
    wrong = write_release_layout(tmp_path / "wrong.ckpt", NAME, shapes={"model.teacher.encoder.pos_embed": (1, 250, 384)})
    point_at(monkeypatch, atstframe_small=loopback.serve("small.ckpt", wrong))
    with pytest.raises(CheckpointError, match=r"not the released atstframe_small \(nothing was kept\).*"
                                              r"model.teacher.encoder.pos_embed is \[1, 250, 384\] float32, "
                                              r"expected \[1, 251, 384\] float32"):
        resolve_checkpoint(NAME, progress=False)
    assert cache_listing(cache) == []


def test_a_dino_style_release_is_verified_by_its_encoders(cache, loopback, tmp_path, monkeypatch):
    bad = write_release_layout(tmp_path / "bad.ckpt", "atstclip_small", dino=True,
                               shapes={"model.teacher.encoder.cls_token": (1, 2, 384)})
    point_at(monkeypatch, atstclip_small=loopback.serve("bad.ckpt", bad))
    with pytest.raises(CheckpointError, match="manifest: wrong shape or dtype: model.teacher.encoder.cls_token is "
                                              "\\[1, 2, 384\\] float32, expected \\[1, 1, 384\\] float32$"):
        resolve_checkpoint("atstclip_small", progress=False)
    dino = write_release_layout(tmp_path / "clip.ckpt", "atstclip_small", dino=True)
    point_at(monkeypatch, atstclip_small=loopback.serve("clip.ckpt", dino))
    assert resolve_checkpoint("atstclip_small", progress=False) == cache / "atstclip_small.ckpt"
    assert load_checkpoint("atstclip_small").family_source == "dino"


def test_offline_mode_with_and_without_the_cached_file(cache, loopback, compact, monkeypatch):
    point_at(monkeypatch, atstframe_small=loopback.serve("small.ckpt", compact))
    monkeypatch.setenv("ATST_OFFLINE", "1")
    target = cache / "atstframe_small.ckpt"
    with pytest.raises(OfflineError, match=f"{target} does not exist.*ATST_OFFLINE=1.*atst download atstframe_small"):
        resolve_checkpoint(NAME)
    assert loopback.requests == []
    monkeypatch.delenv("ATST_OFFLINE")
    with pytest.raises(OfflineError, match="offline=True"):
        resolve_checkpoint(NAME, offline=True)
    resolve_checkpoint(NAME, progress=False)
    monkeypatch.setenv("ATST_OFFLINE", "yes")
    assert resolve_checkpoint(NAME) == target
    assert len(loopback.requests) == 1
    monkeypatch.setenv("ATST_OFFLINE", "maybe")
    with pytest.raises(ValueError, match="ATST_OFFLINE must be a boolean"):
        resolve_checkpoint(NAME)


def test_a_changed_cached_file_is_an_error_naming_it(cache, loopback, compact, monkeypatch):
    point_at(monkeypatch, atstframe_small=loopback.serve("small.ckpt", compact))
    target = resolve_checkpoint(NAME, progress=False)
    data = bytearray(target.read_bytes())
    data[-100] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=f"{target} is not the file that was verified.*SHA-256"):
        resolve_checkpoint(NAME)
    target.write_bytes(compact.read_bytes())  # the same bytes again, a new modification time: hashed, accepted
    assert resolve_checkpoint(NAME) == target
    assert len(loopback.requests) == 1


def test_a_file_put_into_the_cache_by_hand_is_verified_on_first_use(cache, tmp_path, monkeypatch):
    monkeypatch.setenv("ATST_OFFLINE", "1")
    cache.mkdir()
    shutil.copy(write_release_layout(tmp_path / "clip.ckpt", "atstclip_small"), cache / "atstframe_small.ckpt")
    with pytest.raises(CheckpointError, match="atstframe_small.ckpt is not the released atstframe_small.*delete it"):
        resolve_checkpoint(NAME)
    assert (cache / "atstframe_small.ckpt").exists()  # the user's file is left alone
    shutil.copy(write_release_layout(tmp_path / "small.ckpt", NAME), cache / "atstframe_small.ckpt")
    assert resolve_checkpoint(NAME) == cache / "atstframe_small.ckpt"
    assert (cache / "atstframe_small.ckpt.sha256.json").is_file()


def test_concurrent_callers_download_once(cache, loopback, compact, monkeypatch):
    point_at(monkeypatch, atstframe_small=loopback.serve("small.ckpt", compact))
    results = []
    threads = [threading.Thread(target=lambda: results.append(resolve_checkpoint(NAME, progress=False)))
               for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [cache / "atstframe_small.ckpt"] * 3
    assert len(loopback.requests) == 1


def test_a_cache_folder_that_cannot_be_written_is_named(tmp_path, compact, loopback, monkeypatch):
    (tmp_path / "not_a_folder").write_text("")
    monkeypatch.setenv("ATST_CACHE", str(tmp_path / "not_a_folder"))
    point_at(monkeypatch, atstframe_small=loopback.serve("small.ckpt", compact))
    with pytest.raises(DownloadError, match="cannot write into the cache folder .*not_a_folder.*ATST_CACHE"):
        resolve_checkpoint(NAME)
    assert loopback.requests == []


# ------------------------------------------------------------------------------------ Google Drive, no network

def test_the_google_drive_path_calls_gdown_with_the_release_id(cache, tmp_path, monkeypatch):
    import gdown

    base = write_release_layout(tmp_path / "base.ckpt", "atstframe_base")
    calls = []

    def fake_download(**kwargs):
        calls.append(kwargs)
        shutil.copy(base, kwargs["output"])
        return kwargs["output"]

    monkeypatch.setattr(gdown, "download", fake_download)
    assert resolve_checkpoint("atstframe_base", progress=False) == cache / "atstframe_base.ckpt"
    assert len(calls) == 1
    assert calls[0]["id"] == "1bGJSZWlAIIJ6GL5Id5dW0PTB72DL-QDQ" and "url" not in calls[0]
    assert calls[0]["resume"] is True and calls[0]["output"] == str(cache / ".atstframe_base.ckpt.download")


def test_a_google_drive_quota_page_says_what_to_do(cache, monkeypatch):
    import gdown
    from gdown.exceptions import FileURLRetrievalError

    def quota(**kwargs):
        raise FileURLRetrievalError("Too many users have viewed or downloaded this file recently.")

    monkeypatch.setattr(gdown, "download", quota)
    with pytest.raises(DownloadError, match="quota.*Too many users.*by hand: open https://drive.google.com/file/d/"
                                            "1xZoOTuxV415icYONYbeFQzgrmJQf4a4B/view.*save the file as "
                                            f".*{cache / 'atstframe_small.ckpt'}"):
        resolve_checkpoint(NAME)


def test_no_network_says_so_and_how_to_download_by_hand(cache, monkeypatch):
    monkeypatch.setattr(atst.download, "RETRIES", 0)
    with socket.socket() as closed:  # a port nobody listens on: connection refused, as without a network
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    point_at(monkeypatch, atstframe_small=f"http://127.0.0.1:{port}/small.ckpt")
    with pytest.raises(DownloadError, match=f"could not reach 127.0.0.1:{port} \\(no network.*by hand.*save the "
                                            f"file as {cache / 'atstframe_small.ckpt'}"):
        resolve_checkpoint(NAME, progress=False)
    assert cache_listing(cache) == []


# ------------------------------------------------------------------------------------------------ the doors

def test_atst_download_info_export_by_name(cache, loopback, tmp_path, monkeypatch, capsys):
    files = {name: write_release_layout(tmp_path / f"{name}.ckpt", name) for name in RELEASES}
    point_at(monkeypatch, **{name: loopback.serve(f"{name}.ckpt", path) for name, path in files.items()})
    other = tmp_path / "elsewhere"
    assert atst_main(["download", "all", "--cache", str(other), "--quiet"]) == 0
    assert sorted(p.name for p in other.glob("*.ckpt")) == sorted(f"{name}.ckpt" for name in RELEASES)
    assert atst_main(["download", "--list", "--cache", str(other)]) == 0
    out = capsys.readouterr().out
    assert out.count(" cached ") == 4 and "atstclip_base" in out
    assert atst_main(["info", NAME, "--offline"]) == 2  # offline, and not in $ATST_CACHE
    assert f"{cache / 'atstframe_small.ckpt'} does not exist" in capsys.readouterr().err
    assert atst_main(["download", NAME, "--quiet"]) == 0
    assert atst_main(["info", NAME, "--json", "--offline"]) == 0
    info = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert (info["release"], info["arch"], info["family"]) == (NAME, "small", "ATST-Frame")
    assert "CC-BY-4.0" in info["licence"] and info["path"] == str(cache / "atstframe_small.ckpt")
    assert atst_main(["export", NAME, str(tmp_path / "small.safetensors"), "--offline"]) == 0
    assert atst_main(["download", "atstframe_huge"]) == 2
    assert "atstframe_huge" in capsys.readouterr().err
    assert cache_dir() == cache


def test_s3prl_and_hear_launchers_take_a_name(cache, loopback, compact, monkeypatch):
    from hear_atst.launcher import build_parser as hear_parser
    from s3prl_upstream.hubconf import atst_frame
    from s3prl_upstream.launcher import prepare_argv

    point_at(monkeypatch, atstframe_small=loopback.serve("small.ckpt", compact))
    target = str(cache / "atstframe_small.ckpt")
    argv = prepare_argv(["-m", "train", "-u", "atst_frame", "-k", NAME, "-d", "speech_commands"],
                        cuda_available=False)
    assert argv[argv.index("-k") + 1] == target
    other = ["-m", "train", "-u", "hubert", "-k", "1bGJSZWlAIIJ6GL5Id5dW0PTB72DL-QDQ", "--device", "cpu"]
    assert prepare_argv(other) == other  # another upstream's -k is not ours to read
    with pytest.raises(SystemExit, match="-k atstframe_bas:.*atstframe_small"):
        prepare_argv(["-u", "atst_frame", "-k", "atstframe_bas"])
    assert hear_parser().parse_args(["embed", "--model", NAME]).model == target
    assert hear_parser().parse_args(["validate", "--model", NAME]).model == target
    assert atst_frame(ckpt=NAME).backbone.encoder.config.embed_dim == 384
    monkeypatch.setenv(hear_atst.CHECKPOINT_ENV, NAME)
    assert hear_atst.load_model().scene_embedding_size == 12 * 384
    assert len(loopback.requests) == 1
