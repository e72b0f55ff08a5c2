"""`atst embed` under torchrun (2 gloo processes on the CPU), and the input forms a sharded corpus comes in:
manifests and WebDataset tar shards. Every clip is embedded once, the outputs equal a single-process run's, a
rerun redoes nothing that finished, and OUT/index.json lists every input with its outputs and status."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from atst.cli import main
from atst.embed_ranks import Topology, rank_device
from atst.fileio import temporary_name
from conftest import (CORRUPT_WAV, SAMPLE_RATE, subprocess_env, wav_bytes, write_tar_shard, write_test_wav,
                      write_tone_clips)

N_CLIPS = 7


def torchrun_embed(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "atst",
               "embed", *args, "--quiet"]
    return subprocess.run(command, cwd=cwd, env=subprocess_env(OMP_NUM_THREADS="1"), capture_output=True, text=True,
                          timeout=600)


def index_of(out: Path) -> dict:
    return json.loads((out / "index.json").read_text())


def outputs_of(out: Path) -> dict[str, np.ndarray]:
    return {str(p.relative_to(out)): np.load(p) for p in sorted(out.rglob("*.npy"))}


def mtimes(out: Path) -> dict[str, int]:
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in out.rglob("*.npy")}


def test_two_processes_embed_each_file_once_as_one_process_would(tiny_frame_ckpt, tmp_path):
    write_tone_clips(tmp_path / "audio" / "a", N_CLIPS)
    write_test_wav(tmp_path / "audio" / "b" / "long.flac", 12.5, 44100, channels=2)
    ckpt = str(tiny_frame_ckpt)
    # the single-process run, from the same folder so that the inputs read the same
    single = subprocess.run([sys.executable, "-m", "atst", "embed", "audio", "--ckpt", ckpt, "--out", "one",
                             "--quiet"], cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True,
                            timeout=600)
    assert single.returncode == 0, single.stderr
    first = torchrun_embed(tmp_path, "audio", "--ckpt", ckpt, "--out", "two")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "by 2 processes" in first.stdout and first.stdout.count("wrote ") == 1  # rank 0 alone reports

    one, two = outputs_of(tmp_path / "one"), outputs_of(tmp_path / "two")
    assert sorted(one) == sorted(two) and len(two) == 3 * (N_CLIPS + 1)
    for name, value in one.items():  # other batch partners: the same numbers up to float rounding
        np.testing.assert_allclose(two[name], value, atol=1e-5, rtol=1e-4, err_msg=name)
    index, reference = index_of(tmp_path / "two"), index_of(tmp_path / "one")
    assert index["world_size"] == 2 and index["counts"] == {"written": N_CLIPS + 1, "kept": 0, "skipped": 0}
    rows = index["inputs"]
    assert [r["input"] for r in rows] == [r["input"] for r in reference["inputs"]]  # each input once, plan order
    assert [(r["outputs"], r["status"]) for r in rows] == [(r["outputs"], r["status"]) for r in reference["inputs"]]
    assert [r["rank"] for r in rows] == [i % 2 for i in range(N_CLIPS + 1)]  # round-robin over the plan

    # a second run does nothing
    before = mtimes(tmp_path / "two")
    second = torchrun_embed(tmp_path, "audio", "--ckpt", ckpt, "--out", "two")
    assert second.returncode == 0, second.stderr[-3000:]
    assert mtimes(tmp_path / "two") == before
    assert index_of(tmp_path / "two")["counts"] == {"written": 0, "kept": N_CLIPS + 1, "skipped": 0}

    # after a crash: one file's outputs incomplete and a temporary of the dead writer left behind
    out = tmp_path / "two"
    (out / "a" / "tone03.wav.timestamps.npy").unlink()
    stale = temporary_name(out / "a" / "tone03.wav.scene.npy").with_name(".tone03.wav.scene.npy.tmp-999999999-00")
    stale.write_bytes(b"left by a killed run")
    third = torchrun_embed(tmp_path, "audio", "--ckpt", ckpt, "--out", "two")
    assert third.returncode == 0, third.stderr[-3000:]
    changed = {name for name, stamp in mtimes(out).items() if before.get(name) != stamp}
    assert changed == {f"a/tone03.wav.{kind}.npy" for kind in ("scene", "timestamp_embeddings", "timestamps")}
    assert index_of(out)["counts"] == {"written": 1, "kept": N_CLIPS, "skipped": 0} and not stale.exists()


def test_manifests_and_tar_shards_are_inputs(tiny_frame_ckpt, tmp_path, capsys):
    clips = tmp_path / "clips"
    write_test_wav(clips / "x.wav", 1.2, seed=1)
    write_test_wav(clips / "deep" / "y.flac", 2.0, 22050, seed=2)
    outside = write_test_wav(tmp_path / "elsewhere" / "z.wav", 0.7, seed=3)
    (clips / "list.csv").write_text(f"label,path\n1,x.wav\n2,deep/y.flac\n3,{outside}\n4,gone.wav\n")
    shard = write_tar_shard(tmp_path / "shards" / "000001.tar", {
        "k1.wav": wav_bytes(1.5, seed=4), "k1.json": b"{}", "sub/k2.flac": wav_bytes(0.9, seed=5, format="FLAC"),
        "bad.wav": CORRUPT_WAV, "../escape.wav": wav_bytes(0.5, seed=6)})
    write_tar_shard(tmp_path / "shards" / "000002.tar", {"k3.wav": wav_bytes(3.0, seed=7)})
    out = tmp_path / "emb"
    args = ["embed", str(clips / "list.csv"), str(tmp_path / "shards" / "{000001..000002}.tar"), "--ckpt",
            str(tiny_frame_ckpt), "--out", str(out), "--quiet"]
    assert main(args) == 1
    err = capsys.readouterr().err
    for named in ("gone.wav: no such file", "000001.tar:bad.wav: cannot decode audio",
                  "000001.tar:../escape.wav: the member's path leaves the shard's folder"):
        assert err.count(named) == 1, (named, err)
    expected = {"x.wav", "deep/y.flac", str(outside.relative_to("/")), "000001.tar/k1.wav", "000001.tar/sub/k2.flac",
                "000002.tar/k3.wav"}
    assert {str(p.relative_to(out))[: -len(".scene.npy")] for p in out.rglob("*.scene.npy")} == expected
    assert not (tmp_path / "escape.wav.scene.npy").exists()
    # a member embeds as the same audio in a file would
    write_test_wav(tmp_path / "k2.flac", 0.9, seed=5)
    assert main(["embed", str(tmp_path / "k2.flac"), "--ckpt", str(tiny_frame_ckpt), "--out", str(tmp_path / "f"),
                 "--quiet"]) == 0
    np.testing.assert_allclose(np.load(out / "000001.tar" / "sub" / "k2.flac.timestamp_embeddings.npy"),
                               np.load(tmp_path / "f" / "k2.flac.timestamp_embeddings.npy"), atol=1e-5, rtol=1e-4)
    index = index_of(out)
    assert index["counts"] == {"written": 6, "kept": 0, "skipped": 3}
    members = [(r["input"], r["member"], r["status"]) for r in index["inputs"] if r["member"] is not None]
    assert members == [(str(shard), "k1.wav", "written"), (str(shard), "sub/k2.flac", "written"),
                       (str(shard), "bad.wav", "skipped"), (str(shard), "../escape.wav", "skipped"),
                       (str(shard.with_name("000002.tar")), "k3.wav", "written")]
    before = mtimes(out)
    assert main(args) == 1  # a rerun: everything done is kept, members unread; the unusable ones named again
    assert mtimes(out) == before and index_of(out)["counts"] == {"written": 0, "kept": 6, "skipped": 3}


def test_a_truncated_shard_is_named_once_and_its_earlier_members_stand(tiny_frame_ckpt, tmp_path, capsys):
    shard = write_tar_shard(tmp_path / "s.tar", {"a.wav": wav_bytes(1.0), "b.wav": wav_bytes(1.0, seed=1)})
    data = shard.read_bytes()
    shard.write_bytes(data[: 512 + SAMPLE_RATE * 2 + 1024 + 100])  # a.wav whole, b.wav cut short
    assert main(["embed", str(shard), "--ckpt", str(tiny_frame_ckpt), "--out", str(tmp_path / "e"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.count("s.tar: cannot read the tar shard") == 1
    assert (tmp_path / "e" / "s.tar" / "a.wav.scene.npy").is_file()


def test_inputs_that_are_refused_before_any_work(tiny_frame_ckpt, tmp_path, capsys):
    ckpt = str(tiny_frame_ckpt)
    write_tar_shard(tmp_path / "one" / "s.tar", {"a.wav": wav_bytes(1.0)})
    write_tar_shard(tmp_path / "two" / "s.tar", {"b.wav": wav_bytes(1.0)})
    assert main(["embed", str(tmp_path / "one" / "s.tar"), str(tmp_path / "two" / "s.tar"), "--ckpt", ckpt,
                 "--out", str(tmp_path / "e")]) == 2
    assert "would both write" in capsys.readouterr().err
    assert main(["embed", str(tmp_path / "shards" / "{0..3}.tar"), "--ckpt", ckpt, "--out", str(tmp_path / "e")]) == 2
    assert "shard(s) do not exist" in capsys.readouterr().err
    (tmp_path / "notes.md").write_text("x")
    assert main(["embed", str(tmp_path / "notes.md"), "--ckpt", ckpt, "--out", str(tmp_path / "e")]) == 2
    assert "manifests (.csv" in capsys.readouterr().err
    assert not (tmp_path / "e" / "index.json").exists()


def test_topology_comes_from_torchrun_and_each_process_takes_its_gpu():
    assert Topology.from_env({}) == Topology(0, 1, 0)
    assert Topology.from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == Topology(3, 4, 1)
    for environ, named in (({"RANK": "x", "WORLD_SIZE": "2"}, r"\$RANK"), ({"WORLD_SIZE": "2"}, r"\$RANK"),
                           ({"RANK": "2", "WORLD_SIZE": "2"}, "outside"), ({"RANK": "0", "WORLD_SIZE": "-1"},
                                                                          r"\$WORLD_SIZE")):
        with pytest.raises(ValueError, match=named):
            Topology.from_env(environ)
    assert rank_device("cuda", Topology(3, 4, 1), device_count=2) == torch.device("cuda", 1)
    with pytest.raises(ValueError, match="LOCAL_RANK 2 but 2 CUDA device"):
        rank_device("cuda", Topology(2, 4, 2), device_count=2)
    assert rank_device("cuda:0", Topology(3, 4, 1)) == torch.device("cuda", 0)  # explicit: as given
    assert rank_device("cuda", Topology()) == torch.device("cuda")
    assert rank_device("cpu", Topology(1, 2, 1)) == torch.device("cpu")
