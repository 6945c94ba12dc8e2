"""One augmentation recipe on every device: the batched policies, the CPU-worker path, the device-resident
cache (exercised on CPU tensors: the same code path as CUDA), and what the bundle records."""
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import tiny_cfg
from skinlesion.data.batch_augment import POLICIES, BatchAugment, CenterBatch, Policy, jpeg
from skinlesion.data.cache import AugmentedBatches, CachedImages, DeviceBatches, EpochSampler
from skinlesion.data.transforms import Preprocessing
from skinlesion.training.fit import train
from skinlesion.data.run import Run


def cache_file(tmp_path, n=40, size=24, seed=0):
    g = np.random.default_rng(seed)
    x = g.integers(0, 256, (n, 3, size, size), dtype=np.uint8)
    path = tmp_path / "cache.npy"
    np.save(path, x)
    return path, x


def test_cpu_workers_and_device_resident_paths_give_identical_batches(tmp_path):
    """The CPU recipe (batches augmented in 2 DataLoader worker processes) and the device-resident cache
    (here on CPU tensors) draw the same transforms for the same batch: one implementation, one seed rule."""
    path, _ = cache_file(tmp_path)
    idx, targets = np.arange(3, 40, 2), np.arange(3, 40, 2) % 2
    aug = BatchAugment(20, (0.5,) * 3, (0.25,) * 3, "derm")
    sampler = EpochSampler(len(idx), seed=7)
    sampler.set_epoch(3)
    workers = torch.utils.data.DataLoader(AugmentedBatches(path, idx, targets, aug, seed=11), batch_size=8,
                                          sampler=sampler, num_workers=2)
    resident = DeviceBatches(CachedImages(path, idx, targets, None, seed=11), 8, aug, sampler=sampler,
                             device=torch.device("cpu"))
    a, b = list(workers), list(resident)
    assert len(a) == len(b) == len(resident) == 3
    for (xa, ya, ia), (xb, yb, ib) in zip(a, b):
        assert xa.shape == xb.shape and xa.dtype == torch.float32
        assert torch.allclose(xa, xb, atol=1e-5) and torch.equal(ya, yb) and torch.equal(ia, ib)
    sampler.set_epoch(4)  # another epoch draws other transforms
    assert not torch.allclose(next(iter(resident))[0], b[0][0])


def test_device_batches_give_each_rank_its_own_padded_shard(tmp_path, monkeypatch):
    path, _ = cache_file(tmp_path, n=11)
    idx = np.arange(11)
    seen = []
    for rank in (0, 1):
        monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
        monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 2)
        monkeypatch.setattr(torch.distributed, "get_rank", lambda r=rank: r)
        sampler = EpochSampler(11, seed=0)
        train = DeviceBatches(CachedImages(path, idx, idx % 2, None), 4, BatchAugment(20, (0.5,) * 3, (0.25,) * 3),
                              sampler=sampler)
        rows = torch.cat([b[2] for b in train])
        assert len(train) == 2 and len(rows) == 6  # ceil(11 / 2) rows each, in batches of 4
        seen.append(rows)
    assert set(torch.cat(seen).tolist()) == set(range(11))  # together: every image (one repeated as padding)


def test_device_resident_validation_equals_the_eval_transform(tmp_path):
    path, x = cache_file(tmp_path, size=27)
    pre = Preprocessing(20, 27, (0.4, 0.5, 0.6), (0.2, 0.25, 0.3))
    idx = np.array([5, 1, 9, 2])
    val = DeviceBatches(CachedImages(path, idx, np.zeros(4), None), 3, CenterBatch(pre.image_size, pre.mean, pre.std))
    got = torch.cat([b[0] for b in val])
    want = torch.stack([pre.eval_transform()(torch.from_numpy(x[i])) for i in idx])
    assert torch.allclose(got, want, atol=1e-6)
    assert [int(i) for b in val for i in b[2]] == [0, 1, 2, 3]


def test_derm_policy_turns_and_flips_reach_all_eight_symmetries():
    """With crop, affine and colour off, each image is one of the 8 symmetries of the square, all drawn."""
    p = Policy(scale=(1.0, 1.0), ratio=(1.0, 1.0), rot90=True, affine_p=0.0, brightness=0, contrast=0,
               saturation=0, hue=0)
    aug = BatchAugment(8, (0.0,) * 3, (1.0,) * 3, p)
    x = torch.arange(64, dtype=torch.uint8).view(1, 1, 8, 8).expand(200, 3, 8, 8).contiguous()
    out = (aug(x, torch.Generator().manual_seed(0)) * 255).round().to(torch.uint8)[:, 0]
    ref = x[0, 0]
    sym = [torch.rot90(r, k, (0, 1)) for r in (ref, ref.flip(1)) for k in range(4)]
    seen = [next(i for i, s in enumerate(sym) if torch.equal(o, s)) for o in out]  # raises if none matches
    counts = np.bincount(seen, minlength=8)
    assert (counts > 10).all(), counts


def test_policy_parameters_follow_their_declared_ranges():
    aug = BatchAugment(16, (0.0,) * 3, (1.0,) * 3, "derm")
    prm = aug.draw(20000, torch.Generator().manual_seed(1), "cpu")
    p = POLICIES["derm"]
    assert abs(prm["affine"].float().mean() - p.affine_p) < 0.02
    assert abs(prm["blur"].float().mean() - p.blur_p) < 0.02 and abs(prm["jpeg"].float().mean() - p.jpeg_p) < 0.02
    assert np.allclose(np.bincount(prm["turns"].numpy()) / 20000, 0.25, atol=0.02)
    area = prm["crop_w"] * prm["crop_h"]
    assert area.min() >= p.scale[0] - 1e-6 and area.max() <= 1 + 1e-6
    assert prm["quality"].min() >= 40 and prm["quality"].max() <= 95
    assert prm["brightness"].min() >= 0.7 and prm["brightness"].max() <= 1.3
    classic = BatchAugment(16, (0.0,) * 3, (1.0,) * 3, "classic").draw(1000, torch.Generator().manual_seed(1), "cpu")
    assert not classic["jpeg"].any() and not classic["blur"].any() and (classic["turns"] == 0).all()


@pytest.mark.parametrize("quality", [40, 75, 95])
def test_simulated_jpeg_matches_a_real_encoder(quality):
    """The JPEG step reproduces libjpeg's loss: as far from the original as PIL's file, and within about
    one grey level of PIL's decoded pixels."""
    g = np.random.default_rng(0)
    yy, xx = np.mgrid[:64, :64]
    img = np.stack([128 + 60 * np.sin(xx / 5), 100 + 50 * np.cos(yy / 7), 90 + 40 * np.sin((xx + yy) / 9)], -1)
    img = np.clip(img + g.normal(0, 6, img.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=quality)  # PIL's default: 4:2:0, IJG tables
    ref = np.asarray(Image.open(buf)).astype(float)
    sim = jpeg(torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255, torch.tensor([quality]))
    sim = sim[0].permute(1, 2, 0).numpy() * 255
    assert np.allclose(sim, np.round(sim))  # 8-bit steps
    err_pil, err_sim = np.abs(ref - img).mean(), np.abs(sim - img).mean()
    assert abs(err_sim - err_pil) < 0.15 * err_pil
    assert np.abs(sim - ref).mean() < 1.5


def test_device_cache_trains_and_the_bundle_records_the_augmentation(demo_data, tmp_path):
    cfg = tiny_cfg(demo_data, tmp_path, epochs=2, gpu_augment=True, device_cache=True, augment="derm")
    result = train(cfg, Run.quiet(tmp_path / "run"))
    assert 0 <= result.val_metrics["roc_auc"] <= 1
    aug = json.loads((tmp_path / "run/bundle/config.json").read_text())["augmentation"]
    assert aug["policy"] == "derm" and aug["where"] == "device, images held in device memory"
    cpu = tiny_cfg(demo_data, tmp_path, epochs=1, augment="derm")
    train(cpu, Run.quiet(tmp_path / "cpu"))
    aug = json.loads((tmp_path / "cpu/bundle/config.json").read_text())["augmentation"]
    assert aug["policy"] == "derm" and aug["where"].startswith("DataLoader workers")
    assert aug["jpeg_p"] == POLICIES["derm"].jpeg_p


def test_gpu_check_runs_end_to_end_shrunk_on_the_cpu(tmp_path):
    """benchmarks/gpu_check.sh --smoke: every step of the GPU check (bench_pipeline's ratio and start-up
    line, the k-fold cv wall time) on generated data with a tiny CNN, with the interpreter it finds."""
    import os
    import subprocess
    import sys
    from pathlib import Path
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "GPU_CHECK_DIR": str(tmp_path / "work"), "PYTHON": sys.executable}
    out = subprocess.run(["bash", str(repo / "benchmarks/gpu_check.sh"), "--smoke"], capture_output=True, text=True,
                         env=env, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "start-up ratio" in out.stdout and "cv wall time" in out.stdout and "(exit 0)" in out.stdout
    result = json.loads((tmp_path / "work/results/pipeline_simple_cnn_32.json").read_text())
    assert result["ratio"]["train"] > 0 and result["bare"]["train_img_s"] > 0 and result["project"]["epochs"] == 2


def test_default_batch_per_device_scales_the_lr_by_the_recorded_sqrt_rule(demo_data, tmp_path):
    import dataclasses

    import yaml

    from skinlesion.config import load_config
    from skinlesion.training.recipe import CPU_BATCH, CUDA_BATCH, device_batch
    t = load_config().train
    assert t.batch_size is None and t.lr_scaling is None
    cpu, cuda = device_batch(t, cuda=False), device_batch(t, cuda=True)
    assert (cpu.batch_size, cpu.lr, cpu.lr_scaling) == (CPU_BATCH, t.lr, None)
    assert cuda.batch_size == CUDA_BATCH and cuda.lr == pytest.approx(t.lr * (CUDA_BATCH / CPU_BATCH) ** 0.5)
    assert "sqrt" in cuda.lr_scaling
    explicit = dataclasses.replace(t, batch_size=64)
    assert device_batch(explicit, cuda=True) == explicit  # a batch the user chose keeps the lr as given
    cfg = tiny_cfg(demo_data, tmp_path, epochs=1, batch_size=None)
    train(cfg, Run.quiet(tmp_path / "run"))
    saved = yaml.safe_load((tmp_path / "run/config.yaml").read_text())["train"]
    assert saved["batch_size"] == CPU_BATCH and saved["lr"] == cfg.train.lr  # resolved and recorded
    recipe = json.loads((tmp_path / "run/bundle/config.json").read_text())["recipe"]
    assert recipe["batch_size"] == CPU_BATCH and recipe["lr_scaling"] is None
