"""atst.synthetic: the sounds, the one espeak-ng wrapper, the official-layout checkpoints and the command lines
(`python -m atst.synthetic`, `atst-hear make-tasks | make-corpus`)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import SAMPLE_RATE

from atst.synthetic import (HEAD_LAYOUT, espeak_available, make_corpus, make_tasks, mlp_head_state,
                            official_state_dict, random_encoder, speak, write_official_checkpoint)
from atst.synthetic import cli, sounds, speech
from atst.encoder import arch_config

needs_espeak = pytest.mark.skipif(not espeak_available(), reason="espeak-ng is not installed")

GENERATORS = {
    "harmonic": lambda s, rng: sounds.harmonic(220.0, s, rng, "odd_harmonics"),
    "chirp": lambda s, rng: sounds.chirp(300.0, 3000.0, s, rng),
    "noise_bursts": sounds.noise_bursts,
    "noise_band": sounds.noise_band,
    "background": sounds.background,
    **{f"scene_{label}": (lambda s, rng, label=label: sounds.scene_clip(label, s, rng))
       for label in sounds.SCENE_CLASSES},
    **{f"event_{label}": (lambda s, rng, label=label: sounds.event_sound(label, s, rng))
       for label in sounds.EVENT_CLASSES},
}


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_sounds_have_their_length_and_level_and_follow_the_generator(name):
    make = GENERATORS[name]
    first = make(0.37, np.random.default_rng(5))
    assert first.dtype == np.float32 and first.shape == (sounds.num_samples(0.37),)
    assert 0 < np.abs(first).max() <= 1.0
    np.testing.assert_array_equal(first, make(0.37, np.random.default_rng(5)))
    assert not np.array_equal(first, make(0.37, np.random.default_rng(6)))


def test_harmonic_tone_at_any_rate():
    tone = sounds.harmonic_tone(440.0, 1.5, 44100, rng=np.random.default_rng(0))
    assert tone.dtype == np.float32 and tone.shape == (66150,)
    assert abs(tone[0]) < 0.02 and 0.1 < np.abs(tone).max() <= 0.3  # faded in, at about the amplitude asked


def test_event_clip_labels_lie_inside_the_clip():
    audio, events = sounds.event_clip(3.0, np.random.default_rng(1))
    assert audio.shape == (3 * SAMPLE_RATE,) and 1 <= len(events) <= 3
    assert all(0 <= e["start"] < e["end"] <= 3000 and e["label"] in sounds.EVENT_CLASSES for e in events)
    assert events == sorted(events, key=lambda e: (e["start"], e["label"]))


def test_unknown_sound_names_are_errors_that_list_the_known_ones():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="unknown timbre 'flute'; timbres: pure"):
        sounds.harmonic(220.0, 0.1, rng, "flute")
    with pytest.raises(ValueError, match="unknown scene class"):
        sounds.scene_clip("rain", 0.1, rng)
    with pytest.raises(ValueError, match="unknown event class"):
        sounds.event_sound("bark", 0.1, rng)


def test_placement_helpers_cut_at_the_end():
    out = sounds.fit(np.ones(5, dtype=np.float32), 4, offset=2)
    np.testing.assert_array_equal(out, [0, 0, 1, 1])
    np.testing.assert_array_equal(sounds.add_at(np.zeros(3), np.ones(2), 5), np.zeros(3))


@needs_espeak
def test_one_espeak_wrapper_speaks_float32_at_the_model_rate():
    wave = speak("yes", voice="en-us", pitch=40, speed=150)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert 0.2 * SAMPLE_RATE < len(wave) < 2 * SAMPLE_RATE and np.abs(wave).max() > 0.05
    np.testing.assert_array_equal(wave, speak("yes", voice="en-us", pitch=40, speed=150))
    word = speech.spoken_word("left", 1.0, np.random.default_rng(0))
    assert word.shape == (SAMPLE_RATE,) and 0.7 < np.abs(word).max() < 0.9


def test_espeak_wrapper_rejects_bad_settings_and_a_missing_program(monkeypatch):
    with pytest.raises(ValueError, match=r"pitch must be an integer in \[0, 99\], got 120"):
        speak("yes", pitch=120)
    with pytest.raises(ValueError, match="speed"):
        speak("yes", speed=1.5)
    if espeak_available():
        with pytest.raises(RuntimeError, match="voice does not exist"):
            speak("yes", voice="zzz")
    monkeypatch.setattr(speech, "espeak_available", lambda: False)
    with pytest.raises(RuntimeError, match=r"needs espeak-ng on PATH \(apt-get install espeak-ng\)"):
        speak("yes")


def test_head_layout_is_the_pretraining_mlp():
    from atst.training.heads import build_mlp

    state = mlp_head_state("head", 5, 8, 4, torch.Generator().manual_seed(0))
    module = build_mlp(5, 8, 4).state_dict()
    assert [k.split(".", 1)[1] for k in state] == [key for key, _, _ in HEAD_LAYOUT] == list(module)
    assert {k: (v.shape, v.dtype) for k, v in module.items()} == \
           {k.split(".", 1)[1]: (v.shape, v.dtype) for k, v in state.items()}


def test_official_state_dict_sizes():
    for family, count in (("frame", 297), ("clip", 299)):
        encoder = random_encoder(arch_config("tiny", family=family))
        assert len(official_state_dict(encoder, projector_hidden=8, projector_out=4)) == count


def test_checkpoint_command_writes_the_same_checkpoint_atomically(tmp_path, capsys):
    assert cli.main(["checkpoint", str(tmp_path / "cli.ckpt"), "--arch", "tiny", "--seed", "3"]) == 0
    assert "seed 3" in capsys.readouterr().out
    write_official_checkpoint(tmp_path / "api.ckpt", arch="tiny", seed=3)
    a, b = (torch.load(tmp_path / n, map_location="cpu", weights_only=True) for n in ("cli.ckpt", "api.ckpt"))
    assert a["hyper_parameters"] == b["hyper_parameters"] and a["state_dict"].keys() == b["state_dict"].keys()
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    assert (tmp_path / "cli.ckpt").read_bytes() == (tmp_path / "api.ckpt").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["api.ckpt", "cli.ckpt"]  # no temporaries left


def test_hear_door_commands_are_the_synthetic_ones(tmp_path):
    from hear_atst.launcher import main as hear_main

    assert hear_main(["make-tasks", str(tmp_path / "door"), "--size", "tiny", "--seed", "7", "--tasks",
                      "synth_timbre"]) == 0
    assert cli.main(["tasks", str(tmp_path / "here"), "--size", "tiny", "--seed", "7", "--tasks", "synth_timbre"]) == 0
    api = make_tasks(tmp_path / "api", size="tiny", seed=7, tasks=["synth_timbre"])[0]
    expected = [p.read_bytes() for p in sorted(api.rglob("*.wav"))]
    for root in ("door", "here"):
        assert [p.read_bytes() for p in sorted((tmp_path / root / api.name).rglob("*.wav"))] == expected
    assert len(expected) == 18
    assert hear_main(["make-corpus", str(tmp_path / "corpus"), "--n-clips", "2", "--seconds", "0.5"]) == 0
    clips = make_corpus(tmp_path / "corpus_api", n_clips=2, seconds=0.5)
    assert [p.read_bytes() for p in sorted((tmp_path / "corpus").glob("*.wav"))] == [p.read_bytes() for p in clips]
    with pytest.raises(SystemExit):
        cli.main(["tasks", str(tmp_path / "x"), "--size", "huge"])


def test_hear_door_boolean_flags_use_the_one_parser():
    from hear_atst.launcher import build_parser

    args = build_parser().parse_args(["predict", "t", "--shuffle", "yes", "--in-memory", "OFF"])
    assert (args.shuffle, args.in_memory, args.deterministic) == ("True", "False", "True")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["predict", "t", "--shuffle", "maybe"])
