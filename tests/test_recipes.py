"""Recipe options: each changes what it should (LR curve, EMA weights, mixup targets, layer-decay groups,
augmentation policy), and every named recipe trains end to end and is recorded in config.yaml and the bundle."""
import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from skinlesion.config import RECIPES, TrainConfig, load_config
from skinlesion.models import build_model, get_spec
from skinlesion.training import recipe
from skinlesion.training.fit import train
from conftest import tiny_cfg
from skinlesion.data.run import Run


def _t(**kw) -> TrainConfig:
    """The classic recipe's keys (no mixing, no EMA), then ``kw``."""
    from skinlesion.config import RECIPES
    return dataclasses.replace(TrainConfig(), **{**RECIPES["classic"], "recipe": "classic", **kw})


def test_recipe_layer_sits_between_defaults_and_flags(tmp_path):
    cfg = load_config(overrides={"train.recipe": "modern", "train.lr": 1e-3})
    assert cfg.train.ema is True and cfg.train.schedule == "cosine" and cfg.train.lr == 1e-3  # flag wins
    (tmp_path / "c.yaml").write_text("train:\n  recipe: finetune\n  epochs: 3\n")
    cfg = load_config(tmp_path / "c.yaml")
    assert cfg.train.phases == 1 and cfg.train.epochs == 3 and cfg.train.lr == RECIPES["finetune"]["lr"]
    from skinlesion.config import DEFAULT_RECIPE, RunConfig
    assert DEFAULT_RECIPE == "modern" and load_config().train.recipe == "modern" and load_config().train.ema is True
    assert RunConfig().train == load_config().train  # Python's default config is the CLI's
    classic = load_config(overrides={"train.recipe": "classic"}).train
    assert classic.schedule == "plateau" and classic.phases == 2 and classic.ema is False


def test_cosine_schedule_warms_up_then_decays_to_the_floor():
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    t = _t(schedule="cosine", warmup_epochs=1.0, min_lr_factor=0.01)
    sched = recipe.build_scheduler(opt, t, 1e-3, total_steps=100, epochs=10)["scheduler"]
    lrs = []
    for step in range(100):
        sched.step_update(num_updates=step)
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[0] == pytest.approx(1e-5) and np.all(np.diff(lrs[:10]) > 0)  # linear warmup over 1 epoch (10 steps)
    assert max(lrs) == pytest.approx(1e-3, rel=0.02) and np.all(np.diff(lrs[11:]) <= 1e-12)  # then cosine down
    assert lrs[-1] == pytest.approx(1e-5, rel=0.05)


def test_layer_decay_groups_have_decreasing_learning_rates_from_head_to_stem():
    model = build_model(get_spec("efficientnet_lite0", 64), pretrained=False)
    t = _t(schedule="plateau", layer_decay=0.7)
    opt = recipe.build_optimizer(model, t, 1e-3)
    lrs = [g["lr"] for g in opt.param_groups]
    assert lrs[-1] == pytest.approx(1e-3)  # the head
    assert all(a <= b + 1e-15 for a, b in zip(lrs, lrs[1:])) and lrs[0] < 1e-3 * 0.7 ** 3
    n = sum(p.numel() for g in opt.param_groups for p in g["params"])
    assert n == sum(p.numel() for p in model.parameters())  # every trainable parameter exactly once
    assert len(recipe.build_optimizer(model, _t(layer_decay=None), 1e-3).param_groups) == 1


def test_mixup_targets_are_convex_combinations_and_smoothing_is_applied():
    torch.manual_seed(0)
    mixer = recipe.build_mixer(_t(mixup=0.4, cutmix=0.0, mix_prob=1.0, label_smoothing=0.0), "binary")
    x = torch.stack([torch.full((3, 8, 8), float(i)) for i in range(4)])
    y = torch.tensor([0, 1, 1, 0])
    mixed, target = mixer(x.clone(), y)
    lam = 1 - mixed[0, 0, 0, 0].item() / 3  # timm mixes each sample with the flipped batch
    assert target.shape == (4, 2) and torch.allclose(target.sum(1), torch.ones(4))
    assert torch.allclose(mixed[0], lam * x[0] + (1 - lam) * x[3])
    assert target[1, 1].item() == pytest.approx(lam * 1 + (1 - lam) * 1) and target[0, 1].item() == pytest.approx(0.0)
    soft = recipe.smooth(torch.tensor([0, 1]), "binary", 0.1)
    assert soft.tolist() == pytest.approx([0.05, 0.95])
    seven = recipe.smooth(torch.tensor([4]), "7class", 0.07)
    assert seven.sum().item() == pytest.approx(1.0) and seven[0, 4].item() == pytest.approx(0.94)
    assert recipe.build_mixer(_t(), "binary") is None
    loss = recipe.loss_on(torch.nn.BCEWithLogitsLoss(), torch.zeros(4, 1), target, "binary")
    assert loss.item() == pytest.approx(np.log(2), rel=1e-5)


def test_an_unknown_augmentation_policy_is_refused():
    from skinlesion.data.batch_augment import BatchAugment
    with pytest.raises(ValueError, match="unknown augmentation policy"):
        BatchAugment(16, (0.5,) * 3, (0.5,) * 3, "heavy")


def test_ema_weights_differ_from_the_raw_ones_and_are_the_ones_saved(demo_data, tmp_path):
    from safetensors.torch import load_file
    cfg = tiny_cfg(demo_data, tmp_path, phases=1, epochs=2, ema=True, ema_decay=0.9, schedule="cosine")
    train(cfg, Run.quiet(tmp_path / "run"))
    ckpt = torch.load(tmp_path / "run/checkpoints/phase1/best.ckpt", weights_only=True)["state_dict"]
    raw = {k[len("model."):]: v for k, v in ckpt.items() if k.startswith("model.")}
    ema = {k[len("ema.module."):]: v for k, v in ckpt.items() if k.startswith("ema.module.")}
    assert set(raw) == set(ema) and any(not torch.equal(raw[k], ema[k]) for k in raw)
    saved = load_file(str(tmp_path / "run/bundle/model.safetensors"))
    assert all(torch.equal(saved[k], ema[k]) for k in saved)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_named_recipe_trains_and_is_recorded(name, demo_data, tmp_path):
    from skinlesion.config import apply_overrides
    cfg = apply_overrides(tiny_cfg(demo_data, tmp_path), {"train.recipe": name,
                                                          **{f"train.{k}": v for k, v in RECIPES[name].items()}})
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=2, limit_train_batches=2))
    result = train(cfg, Run.quiet(tmp_path / "run"))
    saved = yaml.safe_load((tmp_path / "run/config.yaml").read_text())["train"]
    bundle = json.loads((tmp_path / "run/bundle/config.json").read_text())
    assert saved["recipe"] == bundle["recipe"]["recipe"] == name
    for key, value in RECIPES[name].items():
        if key != "epochs":
            assert saved[key] == value, key
    history = pd.read_csv(tmp_path / "run/metrics.csv")
    assert len(history) == 2 and 0 <= result.val_metrics["roc_auc"] <= 1
    if RECIPES[name].get("schedule") == "cosine":
        assert history["lr"].iloc[1] < history["lr"].iloc[0] * 1.5  # per-step schedule, logged per epoch


def test_lr_find_sweeps_writes_a_plot_and_suggests_a_usable_lr(demo_data, tmp_path, capsys):
    from skinlesion.cli import main
    run = tmp_path / "run"
    common = ["--data", str(demo_data), "--out", str(run), "--arch", "simple_cnn", "--image-size", "32",
              "--num-workers", "0", "--cache-dir", str(tmp_path / "cache"), "--quiet"]
    assert main(["lr-find", *common, "--num-training", "30", "--min-lr", "1e-5", "--max-lr", "1"]) == 0
    out = capsys.readouterr().out
    result = json.loads((run / "lr_find.json").read_text())
    lrs = np.array(result["lr"])
    assert len(lrs) >= 20 and np.all(np.diff(lrs) > 0) and lrs[0] >= 1e-5 and lrs[-1] <= 1.0
    assert (run / "plots/lr_find.png").stat().st_size > 1000 and not (run / "checkpoints").exists()
    lr = result["suggested_lr"]
    assert lr is not None and 1e-5 <= lr <= 1 and f"--lr {lr:.2e}" in out
    assert main(["train", *common, "--epochs", "1", "--lr", f"{lr:.2e}", "--limit-train-batches", "2"]) == 0
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["lr"] == pytest.approx(float(f"{lr:.2e}"))
