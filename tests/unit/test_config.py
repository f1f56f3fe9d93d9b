from __future__ import annotations

import json

import pytest

from semirest.core.config import Config, ConfigError, make_config


def test_presets_and_settings():
    paper = make_config("paper", "semi")
    assert paper.features.backbone == "wide_resnet50_2" and paper.model.num_heads == 32 and paper.model.mu == 32
    assert paper.train.lr == 3e-5 and paper.train.b3 == 2 and paper.train.window_fraction == pytest.approx(0.1)
    un = make_config("fast", "un")
    assert un.train.eps_plus == 0.5 and un.train.b1 == 4 and un.train.b2 == 2


def test_patchcore_preset_is_the_measured_baseline_configuration():
    pc = make_config("patchcore", "un")
    assert pc.features.backbone == "efficientnet_lite0"
    assert pc.features.input_scale == 0.75 and pc.features.lambda_pe == 0.0 and pc.bank.coreset_ratio == 0.1
    fast = make_config("fast", "un")
    assert fast.features.input_scale == 0.0 and fast.model.magnitude_skip and fast.train.positive_windows


def test_fast_semi_fine_tunes_without_synthetic_images_paper_keeps_them():
    assert make_config("fast", "semi").train.b2 == 0
    assert make_config("paper", "semi").train.b2 == 3
    assert make_config("fast", "sup").train.b2 == 2 and make_config("fast", "un").train.b2 == 2


def test_semi_rampup_keeps_the_papers_share_of_the_fine_tuning_stage():
    # paper: lambda_u ramps over 400 of 3000 fine-tuning steps; a shorter stage keeps 400 / 3000
    assert make_config("paper", "semi").train.rampup_steps == 400
    fast = make_config("fast", "semi")
    assert fast.train.rampup_steps == round(400 * fast.train.steps / 3000)
    assert make_config("fast", "un").train.rampup_steps == 400


def test_overrides_parse_types_and_refuse_unknown_names():
    cfg = make_config("fast", "un", ["features.image_size=320", "model.bagging=false", "train.lr=3e-4", "bank.residual=abs", "device=cpu"])
    assert cfg.features.image_size == 320 and cfg.model.bagging is False
    assert cfg.train.lr == 3e-4 and cfg.bank.residual == "abs" and cfg.device == "cpu"
    assert make_config("fast", "un", ["train.lr=1"]).train.lr == 1.0
    with pytest.raises(ConfigError, match="unknown config field 'model.heads'"):
        make_config("fast", "un", ["model.heads=3"])
    with pytest.raises(ConfigError, match="expects true or false"):
        make_config("fast", "un", ["model.bagging=maybe"])
    with pytest.raises(ConfigError, match="expects a int"):
        make_config("fast", "un", ["features.image_size=big"])
    with pytest.raises(ConfigError, match="unknown preset"):
        make_config("huge")


def test_dict_round_trip():
    cfg = make_config("fast", "sup", ["model.depth=2"])
    assert Config.from_dict(cfg.to_dict()) == cfg


def test_retired_switches_load_when_off_and_refuse_when_on():
    """A checkpoint written while a retired switch existed still loads if it was off; one trained
    with it on cannot be reproduced, so it is refused; --set no longer knows it."""
    cfg = make_config("fast", "semi")
    old = cfg.to_dict()
    old["train"] |= {"box_prior": False, "normal_quantile": 0.0, "guess_with": "model",
                     "unlabelled_norm": "unknown", "log_residual": False, "block_size": 8}
    assert Config.from_dict(old) == cfg
    for key, on in [("box_prior", True), ("guess_with", "start"), ("unlabelled_norm", "all"), ("log_residual", True)]:
        changed = {**old, "train": {**old["train"], key: on}}
        with pytest.raises(ConfigError, match=f"train.{key} = .*: this option was removed"):
            Config.from_dict(changed)
        with pytest.raises(ConfigError, match="unknown config field"):
            make_config("fast", "semi", [f"train.{key}={json.dumps(on)}"])
    bad = cfg.to_dict()
    bad["train"]["box_priors"] = False
    with pytest.raises(ConfigError, match="unknown config field train.box_priors"):
        Config.from_dict(bad)


@pytest.mark.parametrize("preset", ["fast", "paper"])
def test_semi_runs_its_un_stage_with_the_un_setting(preset):
    from dataclasses import asdict

    from semirest.core.train.stages import unsupervised_stage

    stage = unsupervised_stage(make_config(preset, "semi"))
    un = make_config(preset, "un")
    assert stage.setting == "un"
    a, b = asdict(stage.train), asdict(un.train)
    for k in ("steps", "rampup_steps"):  # steps: semi's 3/8 scaled back; rampup only matters in semi
        a.pop(k), b.pop(k)
    assert a == b
    assert abs(stage.train.steps - un.train.steps) <= 1
