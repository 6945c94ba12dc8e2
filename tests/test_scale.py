"""Device-side batch augmentation, cached frozen features and the phase-1 no_grad path."""
import dataclasses

import pandas as pd
import torch

from skinlesion.data.batch_augment import BatchAugment, Policy
from skinlesion.data.transforms import Preprocessing
from skinlesion.training.fit import train
from conftest import state, tiny_cfg
from skinlesion.data.run import Run


def squares(n=6, size=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)


def test_batch_augment_shapes_ranges_and_determinism():
    pre = Preprocessing(32, 40, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    aug = BatchAugment(pre.image_size, pre.mean, pre.std)
    x = squares()
    a = aug(x, torch.Generator().manual_seed(1))
    b = aug(x, torch.Generator().manual_seed(1))
    c = aug(x, torch.Generator().manual_seed(2))
    assert a.shape == (6, 3, 32, 32) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.allclose(a, c)
    lo, hi = (0 - 0.5) / 0.25, (1 - 0.5) / 0.25
    assert a.min() >= lo - 1e-5 and a.max() <= hi + 1e-5
    assert abs(a.mean().item() - (x.float().mean().item() / 255 - 0.5) / 0.25) < 0.5  # near the input's mean


def test_batch_augment_identity_parameters_reproduce_a_center_crop():
    aug = BatchAugment(40, (0.0,) * 3, (1.0,) * 3, Policy(scale=(1.0, 1.0), ratio=(1.0, 1.0), degrees=0.0,
                                                         brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0))
    x = squares(2)
    out = aug(x, torch.Generator().manual_seed(0))
    # flips are still random: the result equals the image or one of its flips
    ref = x.float() / 255
    for o, r in zip(out, ref):
        assert min((o - v).abs().max().item() for v in (r, r.flip(-1), r.flip(-2), r.flip(-1).flip(-2))) < 1e-5


def test_gpu_augment_path_trains_on_cpu_too(demo_data, tmp_path):
    cfg = tiny_cfg(demo_data, tmp_path, epochs=2, gpu_augment=True)
    result = train(cfg, Run.quiet(tmp_path / "run"))
    assert 0 <= result.val_metrics["roc_auc"] <= 1 and len(pd.read_csv(tmp_path / "run/metrics.csv")) == 2


def test_cached_features_train_the_head_only_and_keep_the_backbone(demo_data, tmp_path, capsys):
    cfg = tiny_cfg(demo_data, tmp_path, epochs=3, phase1_epochs=3, cache_features=2, limit_train_batches=None)
    train(cfg, Run.quiet(tmp_path / "run"))
    assert "caching backbone features: 2 augmented view(s)" in capsys.readouterr().out
    init = tiny_cfg(demo_data, tmp_path, epochs=1, phase1_epochs=1, limit_train_batches=1)
    train(dataclasses.replace(init, train=dataclasses.replace(init.train, lr=0.0)), Run.quiet(tmp_path / "ref"))
    a, b = state(tmp_path / "run/checkpoints/phase1/last.ckpt"), state(tmp_path / "ref/checkpoints/phase1/last.ckpt")
    for k in a:
        if k.startswith("backbone."):
            assert torch.equal(a[k], b[k]), k  # frozen backbone (incl. BatchNorm statistics) untouched
    assert not torch.equal(a["head.weight"], b["head.weight"])
    history = pd.read_csv(tmp_path / "run/metrics.csv")
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]
