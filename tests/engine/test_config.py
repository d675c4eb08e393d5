import pytest

from engine.config import Config, field_specs, parse_override
from engine.errors import ConfigError
from engine.presets import default_config, from_dict, load_toml


def test_defaults_validate_and_roundtrip_toml(tmp_path):
    cfg = default_config("simclr")
    cfg.validate()
    path = tmp_path / "c.toml"
    cfg.save(path)
    again = load_toml(path)
    assert again.to_dict() == cfg.to_dict()
    assert again.method_name == "simclr"


def test_override_coerces_type():
    cfg = default_config()
    cfg.set(*parse_override("method.temperature=0.2"))
    cfg.set(*parse_override("optim.batch_size=64"))
    cfg.set(*parse_override("run.amp=false"))
    assert cfg.method.temperature == 0.2
    assert cfg.optim.batch_size == 64 and isinstance(cfg.optim.batch_size, int)
    assert cfg.run.amp is False


@pytest.mark.parametrize(
    "key,value,fragment",
    [
        ("optim.lr", "-1", "optim.lr = -1 is out of range (allowed: 0 < value ≤ 10)"),
        ("optim.batch_size", "1", "optim.batch_size = 1 is out of range (allowed: 2 ≤ value"),
        ("optim.batch_size", "abc", "optim.batch_size: 'abc' is not a valid int"),
        ("optim.optimizer", "adam",
         "optim.optimizer: 'adam' is not allowed (allowed: one of 'sgd', 'adamw')"),
        ("augment.flip_prob", "1.5", "augment.flip_prob = 1.5 is out of range"),
        ("method.temperature", "nan", "method.temperature: nan is not a finite number"),
    ],
)
def test_invalid_values_name_field_and_range(key, value, fragment):
    cfg = default_config()
    with pytest.raises(ConfigError) as info:
        cfg.set(key, value)
    assert fragment in str(info.value)


def test_unknown_keys_and_cross_field_rules(tmp_path):
    cfg = default_config()
    with pytest.raises(ConfigError, match="unknown setting 'optim.lrr'"):
        cfg.set("optim.lrr", "1")
    with pytest.raises(ConfigError, match="unknown section"):
        from_dict({"optimizer": {"lr": 1}})
    with pytest.raises(ConfigError, match="unknown method 'nope'"):
        from_dict({"method": {"name": "nope"}})
    cfg.augment.crop_min_scale = 0.9
    cfg.augment.crop_max_scale = 0.5
    with pytest.raises(ConfigError, match="crop_min_scale must not exceed"):
        cfg.validate()
    bad = tmp_path / "bad.toml"
    bad.write_text("[optim]\nlr = 'fast'\n")
    with pytest.raises(ConfigError, match=r"bad.toml: optim.lr: 'fast' is not a valid float"):
        load_toml(bad)
    with pytest.raises(ConfigError, match="expects section.field=value"):
        parse_override("lr0.1")


def test_every_field_has_help_and_range():
    for spec in default_config().specs():
        assert spec.help, spec.key
        if spec.type in (int, float) and spec.choices is None:
            assert spec.min is not None and spec.max is not None, spec.key


def test_config_module_does_not_need_torch():
    assert Config().data.dataset == "shapes"


def test_a_vit_patch_that_does_not_divide_the_resolution_is_refused_before_start():
    """Caught by validate (so the form marks it) rather than when the backbone is built."""
    cfg = default_config("mae")  # ViT, patch 4, 32 px
    cfg.set("data.resolution", 48)
    cfg.validate()
    cfg.set("backbone.patch_size", 32)
    with pytest.raises(ConfigError, match="patch_size = 32 does not divide data.resolution"):
        cfg.validate()


def test_field_specs_are_built_once_per_section_and_handed_out_as_new_lists():
    """The forms ask for them hundreds of times; a caller that edits its list must not
    change what the next caller gets."""
    cfg = default_config("simclr")
    first = field_specs(cfg.optim, "optim")
    names = [s.name for s in first]
    first.clear()
    again = field_specs(default_config("byol").optim, "optim")
    assert [s.name for s in again] == names and "lr" in names
    assert again[0] is field_specs(cfg.optim, "optim")[0]  # the same spec objects
    assert field_specs(cfg.data, "data")[0].section == "data"
