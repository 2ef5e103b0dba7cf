"""TrainConfig validation names the field; the CLI options come from the config; the resource estimate."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from lorascope.protocol.errors import UserError
from lorascope.trainer import cli_train
from lorascope.trainer.config import TrainConfig


@pytest.mark.parametrize("field, value, message", [
    ("rank", 0, "rank: must be > 0"),
    ("batch_size", -1, "batch_size: must be > 0"),
    ("dropout", 1.0, "dropout: must be in [0, 1)"),
    ("lr", 0.0, "lr: must be in (0, 1)"),
    ("schedule", "step", "schedule: must be one of cosine, linear, constant"),
    ("device", "tpu", "device: must be one of auto, cpu, cuda"),
    ("epochs", 0.0, "epochs: must be > 0 when max_steps is 0"),
    ("weight_delta_every", -5, "weight_delta_every: must be >= 0"),
    ("top_k", 0, "top_k: must be in 1..100"),
    ("dataset", "/no/such/file.jsonl", "dataset: file not found: /no/such/file.jsonl"),
    ("resume", "/no/such/dir", "resume: not a directory"),
    ("run_id", "../escape", "run_id: must be a plain folder name"),
])
def test_bad_values_name_the_field(field, value, message):
    with pytest.raises(UserError) as err:
        TrainConfig(**{field: value})
    assert message in str(err.value)


def test_defaults_are_valid_and_resolved_is_plain_data():
    cfg = TrainConfig()
    assert cfg.scaling == 2.0
    assert TrainConfig(rslora=True, rank=16, alpha=16).scaling == pytest.approx(4.0)
    resolved = cfg.resolved(target_modules=["q_proj"])
    assert resolved["target_modules"] == ["q_proj"] and resolved["lr"] == cfg.lr
    assert set(cfg.cadences()) >= {"weight_delta", "logit_shift", "volatility", "resources"}
    with pytest.raises(UserError, match="unknown option"):
        TrainConfig.from_dict({"rnak": 4})


def test_every_config_field_is_a_cli_option_and_round_trips():
    parser = argparse.ArgumentParser()
    cli_train.add_arguments(parser)
    args = parser.parse_args(["--rank", "4", "--no-chat-template", "--target-modules", "q_proj", "v_proj",
                              "--schedule", "linear", "--max-steps", "7", "--anchors", " Paris", " Rome"])
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)}
    cfg = TrainConfig(**values)
    assert (cfg.rank, cfg.chat_template, cfg.target_modules, cfg.schedule) == (4, False, ["q_proj", "v_proj"], "linear")
    again = parser.parse_args(cli_train._argv_from_config(cfg))
    assert TrainConfig(**{f.name: getattr(again, f.name) for f in dataclasses.fields(TrainConfig)}) == cfg
    with pytest.raises(SystemExit):
        parser.parse_args(["--schedule", "step"])
