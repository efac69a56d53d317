"""A mistyped data-set name is refused as unknown, naming the known ones, wherever a command takes one: training's
pseudo-data (it was trained on and written into the model file) and the model-data-set rule of predict, feedback and
evaluate (which answered a typo with "use 'paper', or a model trained against 'paperr'"; walk-through, helper-70)."""

from __future__ import annotations

import re

import pytest

from crnet.data import DATASETS
from crnet.machines.inference import check_model_dataset
from crnet.pseudodata import PseudoDataConfig

KNOWN = ", ".join(DATASETS)


def test_pseudo_data_config_refuses_an_unknown_data_set():
    with pytest.raises(ValueError, match=re.escape(f"dataset: unknown data set 'paperr'; known: {KNOWN}")):
        PseudoDataConfig(dataset="paperr")
    for name in DATASETS:
        assert PseudoDataConfig(dataset=name).dataset == name


def test_the_model_data_set_rule_names_an_unknown_data_set_first():
    with pytest.raises(ValueError, match=re.escape(f"dataset 'paperr': unknown data set; known: {KNOWN}") + "$"):
        check_model_dataset({"dataset": "paper"}, "paperr")
    with pytest.raises(ValueError, match=r"use 'paper', or a model trained against 'ams02-2021'"):
        check_model_dataset({"dataset": "paper"}, "ams02-2021")  # a known one of another model: the old message
    check_model_dataset({"dataset": "paper"}, "paper")



def test_a_model_file_holding_an_unknown_data_set_is_named(tmp_path):
    """A model trained before names were checked may hold a typo in train_config.pseudo: TrainConfig.of_model (the
    feedback loop's retraining settings) refuses it naming the file and the entry (review, helper-73)."""
    from helpers_modelfile import make_model

    from crnet.machines.modelfile import save_model
    from crnet.machines.training import TrainConfig

    model = make_model("crnet")
    model.metadata["train_config"] = {"machine": "A", "pseudo": {"dataset": "paperr"}}
    path = tmp_path / "old.pt"
    save_model(path, model)
    with pytest.raises(ValueError, match=re.escape(f"{path}: train_config.pseudo: dataset: unknown data set 'paperr'; "
                                                   f"known: {KNOWN}")):
        TrainConfig.of_model(path)
