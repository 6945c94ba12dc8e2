import pytest
import yaml

from skinlesion.config import ConfigError, load_config, save_config


def test_layering_defaults_then_file_then_cli(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("split:\n  seed: 7\n  ratios: [0.6, 0.2, 0.2]\ndata:\n  allow_missing: 0.01\n")
    cfg = load_config(f, {"split.seed": 9})
    assert cfg.split.seed == 9  # CLI wins over file
    assert cfg.split.ratios == (0.6, 0.2, 0.2)  # file wins over default
    assert cfg.data.allow_missing == 0.01
    assert cfg.demo.n == 600  # default kept
    save_config(cfg, tmp_path / "run")
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["split"] == {"seed": 9, "ratios": [0.6, 0.2, 0.2], "folds": None}
    assert load_config(tmp_path / "run" / "config.yaml") == cfg  # resolved config reproduces the run


@pytest.mark.parametrize("text, message", [
    ("split:\n  sead: 1\n", "unknown config key 'split.sead'"),
    ("splitt:\n  seed: 1\n", "unknown config section 'splitt'"),
    ("split:\n  seed: abc\n", "'split.seed': expected int"),
    ("split:\n  ratios: [0.5, 0.5]\n", "'split.ratios': expected a list of 3"),
    ("data:\n  verify: 3\n", "'data.verify': expected true/false"),
    ("[1, 2]\n", "must hold a mapping"),
])
def test_bad_config_file_names_the_key(tmp_path, text, message):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_config(f)


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml does not exist"):
        load_config(tmp_path / "nope.yaml")
