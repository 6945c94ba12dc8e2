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


def test_each_train_option_is_declared_once_and_everything_else_is_derived():
    """The dataclass field carries default, help, validator, flag and the resume lock; RULES, the CLI flags,
    LOCKED_KEYS and the recipe keys a bundle records all come from it."""
    import dataclasses as dc

    from skinlesion.cli import build_parser
    from skinlesion.config import LOCKED_KEYS, RECIPE_KEYS, RULES, TrainConfig, declared
    from skinlesion.data.batch_augment import POLICIES
    from skinlesion.config import AUGMENT_POLICIES
    fields = dc.fields(TrainConfig)
    assert declared(TrainConfig) == list(fields)  # no field without its declaration
    help_text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    for f in fields:
        flag = f.metadata["flag"]
        if flag is not False:
            assert (flag or "--" + f.name.replace("_", "-")) in help_text, f.name
    assert {k for k, *_ in RULES if k.startswith("train.")} == {
        f"train.{f.name}" for f in fields if f.metadata["check"] is not None}
    assert set(LOCKED_KEYS) == {f.name for f in fields if f.metadata["locked"]} and set(RECIPE_KEYS) <= set(LOCKED_KEYS)
    assert AUGMENT_POLICIES == tuple(POLICIES)  # the --augment choices are the implemented policies
