"""GPU-only checks (skipped without CUDA; `pytest -m cuda` runs them with the GPU variants of the other files):
a few pre-training steps and fine-tuning steps in bf16-mixed, and `atst embed --device cuda` against the CPU.

The device-parametrised tests elsewhere cover the rest of the GPU paths: official-mode parity with the fixtures
(`test_parity.py`, TF32 off), hear mode against official mode and batch independence (`test_hear_mode.py`), bf16 and
fp16 autocast in both modes, and the s3prl upstream's forward and backward (`test_s3prl_upstream.py`).
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import hear_atst
from atst import Backbone, load_checkpoint
from atst.cli import main
from atst.synthetic import harmonic_tone
from conftest import SAMPLE_RATE, devices, subprocess_env, write_mixed_corpus
from test_pretrain_e2e import metrics, read_ckpt, run_pretrain, series, tiny_flags

GPU = devices(cpu=False)
STEPS = 6


@pytest.mark.parametrize("device", GPU)
def test_pre_training_steps_in_bf16_mixed(tone_corpus, tmp_path, device):
    save = tmp_path / "run"
    accelerator = "gpu" if device == "cuda" else device
    run_pretrain(tiny_flags(tone_corpus, save, steps=STEPS, accelerator=accelerator, precision="bf16-mixed",
                            num_workers=0, ckpt_every_steps=STEPS))
    loss = [value for _, value in series(metrics(save), "loss")]
    assert len(loss) == STEPS and all(np.isfinite(loss))
    state = read_ckpt(save / "last.ckpt")["state_dict"]
    assert all(v.dtype == torch.float32 for k, v in state.items() if k.endswith(".weight"))  # master weights
    model = hear_atst.load_model(str(save / "last.ckpt")).to(device)
    scene = hear_atst.get_scene_embeddings(torch.randn(2, SAMPLE_RATE, device=device) * 0.1, model)
    assert scene.device.type == device and torch.isfinite(scene).all()


@pytest.mark.parametrize("device", GPU)
def test_fine_tuning_steps_in_bf16_mixed(fixtures, device):
    """The encoder (trainable, bf16 autocast inside the backbone) and a float32 head, trained for a few AdamW
    steps to tell three tones apart: the loss falls, gradients stay finite, weights stay float32."""
    torch.manual_seed(0)
    loaded = load_checkpoint(fixtures / "atstframe_tiny.ckpt", trainable=True)
    backbone = Backbone(loaded.encoder, loaded.frontend_config, autocast="bf16").to(device).train()
    head = torch.nn.Linear(loaded.config.embed_dim, 3).to(device)
    optimizer = torch.optim.AdamW([{"params": list(backbone.parameters()), "lr": 1e-4},
                                   {"params": list(head.parameters()), "lr": 1e-2}])
    rng = np.random.default_rng(0)
    audio = torch.stack([torch.from_numpy(harmonic_tone(hz, 2.0, rng=rng)) for hz in (200, 500, 1200) * 2]).to(device)
    labels = torch.tensor([0, 1, 2] * 2, device=device)
    start = backbone.encoder.blocks[0].attn.qkv.weight.detach().clone()
    losses = []
    for _ in range(STEPS):
        states = backbone(audio, layers=[loaded.config.depth]).states[0]  # float32 out of the bf16 encoder
        loss = F.cross_entropy(head(states.mean(dim=1)), labels)
        optimizer.zero_grad()
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in backbone.parameters() if p.grad is not None)
        optimizer.step()
        losses.append(loss.item())
    assert all(np.isfinite(losses)) and losses[-1] < 0.5 * losses[0]
    weight = backbone.encoder.blocks[0].attn.qkv.weight
    assert weight.dtype == torch.float32 and not torch.equal(weight.detach(), start)


@pytest.mark.parametrize("device", GPU)
def test_embed_command_on_the_gpu_equals_the_cpu(tiny_frame_ckpt, tmp_path, device, exact_fp32):
    write_mixed_corpus(tmp_path / "audio")
    for where in ("cpu", device):
        code = main(["embed", str(tmp_path / "audio"), "--ckpt", str(tiny_frame_ckpt), "--out",
                     str(tmp_path / where), "--device", where, "--quiet"])
        assert code == 1  # the corrupt file of the corpus is skipped and named
    cpu = sorted((tmp_path / "cpu").rglob("*.npy"))
    assert len(cpu) == 9
    for path in cpu:
        np.testing.assert_allclose(np.load(tmp_path / device / path.relative_to(tmp_path / "cpu")), np.load(path),
                                   atol=1e-4, rtol=1e-4, err_msg=str(path))


@pytest.mark.parametrize("device", GPU)
def test_sharded_embed_puts_each_process_on_its_own_gpu(tiny_frame_ckpt, tmp_path, device):
    """As many processes as GPUs (one on a single-GPU machine), each on cuda:LOCAL_RANK."""
    count = torch.cuda.device_count() if device == "cuda" else 2
    write_mixed_corpus(tmp_path / "audio")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(count), "-m",
               "atst", "embed", "audio", "--ckpt", str(tiny_frame_ckpt), "--out", "out", "--device", device,
               "--quiet"]
    result = subprocess.run(command, cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 1, result.stderr[-3000:]  # the corrupt file, named once
    assert result.stderr.count("broken.wav: cannot decode audio") == 1
    assert len(list((tmp_path / "out").rglob("*.npy"))) == 9
