"""The shared test helpers of conftest.py write what they promise (other tests build on them)."""
from __future__ import annotations

import io

import pytest
from conftest import (CORRUPT_WAV, MIXED_CLIPS, SAMPLE_RATE, pcm16_rms, wav_bytes, wav_header, write_test_wav,
                      write_tone_clips)

from atst.audio_io import AudioDecodeError, read_audio


def test_wav_bytes_and_files_have_the_rate_channels_and_subtype_asked(tmp_path):
    data = wav_bytes(0.5, 44100, channels=2)
    assert read_audio(io.BytesIO(data), "mem").shape == (SAMPLE_RATE // 2,)
    assert wav_bytes(0.5, 44100, channels=2) == data and wav_bytes(0.5, 44100, channels=2, seed=1) != data
    path = write_test_wav(tmp_path / "a" / "x.wav", 0.25, 8000, subtype="PCM_16")
    assert wav_header(path) == (1, 2, 8000, 2000) and 0.05 < pcm16_rms(path) < 0.2
    assert wav_header(write_test_wav(tmp_path / "y.wav", 0.1, channels=2, subtype="PCM_24"))[:2] == (2, 3)
    flac = write_test_wav(tmp_path / "z.flac", 1.0, 22050)
    assert read_audio(flac).shape == (SAMPLE_RATE,)


def test_corpora(mixed_corpus, tone_corpus):
    for relative, seconds, _, _ in MIXED_CLIPS:
        assert read_audio(mixed_corpus / relative).shape == (int(round(seconds * SAMPLE_RATE)),)
    assert (mixed_corpus / "sub" / "broken.wav").read_bytes() == CORRUPT_WAV
    with pytest.raises(AudioDecodeError, match="corrupt.wav"):
        read_audio(tone_corpus / "corrupt.wav")
    tones = sorted((tone_corpus / "nested").glob("*.wav"))
    assert len(tones) == 12 and wav_header(tones[-1]) == (1, 2, SAMPLE_RATE, int(round(1.7 * SAMPLE_RATE)))


def test_tone_clips_are_deterministic(tmp_path):
    a = write_tone_clips(tmp_path / "a", n_clips=2)
    b = write_tone_clips(tmp_path / "b", n_clips=2)
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
    assert wav_header(a[1]) == (1, 2, SAMPLE_RATE, int(round(0.7 * SAMPLE_RATE)))
