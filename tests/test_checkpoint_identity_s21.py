"""What a resumed training must share with the run that wrote its checkpoint, closed in session 21:

- a checkpoint written before session 19 (no learning rate or weight decay in its identity) used to resume with a
  changed ``--lr`` silently (the restored optimiser state kept the old rate); they are now read back from its
  optimiser state and compared;
- a resume that crossed the memory limit (in memory <-> streamed) continued on another batch sequence; the record
  layout is now part of the identity and the CLI names ``--memory-gb``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers_store import write_synthetic_store
from helpers_training import TINY_CRNET
from typer.testing import CliRunner

from crnet.cli import app
from crnet.features import TargetTransform
from crnet.machines.checkpoint import CHECKPOINT_FORMAT, optimizer_settings, read_checkpoint
from crnet.machines.training import TrainConfig, train

torch.set_num_threads(1)


def _old_checkpoint(path, lr_schedule: str, lr: float, weight_decay: float) -> dict:
    """A checkpoint as session 18 wrote it (identity without the optimiser settings) after two epochs of a real
    optimiser and scheduler; returns the identity a resume of the same run computes today."""
    net = torch.nn.Linear(2, 1)
    opt = (torch.optim.AdamW if weight_decay > 0 else torch.optim.Adam)(net.parameters(), lr=lr,
                                                                        weight_decay=weight_decay)
    sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=4) if lr_schedule == "cosine"
             else torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=0))
    history = []
    for epoch, val in enumerate((1.0, 2.0)):  # the plateau halves the rate after the worse second epoch
        history.append({"epoch": epoch, "lr": opt.param_groups[0]["lr"], "val_loss": val})
        opt.step()  # no gradients: nothing moves, but the scheduler sees the order training uses
        sched.step(val) if lr_schedule == "plateau" else sched.step()
    old = {"machine": "A", "seed": 0, "lr_schedule": lr_schedule}
    torch.save({"format": CHECKPOINT_FORMAT, "identity_json": json.dumps(old),
                "state_json": json.dumps({"epoch": 2, "history": history}), "optimizer": opt.state_dict()}, path)
    assert opt.param_groups[0]["lr"] != lr  # both schedules have moved the rate: the current one is not the setting
    return {**old, "learning_rate": lr, "weight_decay": weight_decay, "stream_block_size": None}


@pytest.mark.parametrize("schedule", ["cosine", "plateau"])
def test_an_old_checkpoint_refuses_another_learning_rate_or_weight_decay(tmp_path, schedule) -> None:
    path = tmp_path / "m.pt.ckpt"
    identity = _old_checkpoint(path, schedule, 3e-4, 1e-4)
    payload = torch.load(path, weights_only=True)
    assert optimizer_settings(payload) == {"learning_rate": 3e-4, "weight_decay": 1e-4}
    assert read_checkpoint(path, identity)["format"] == CHECKPOINT_FORMAT  # the same run resumes
    with pytest.raises(ValueError, match=r"differs in learning_rate\)"):
        read_checkpoint(path, {**identity, "learning_rate": 1e-3})
    with pytest.raises(ValueError, match=r"differs in weight_decay\)"):
        read_checkpoint(path, {**identity, "weight_decay": 0.0})


def test_a_checkpoint_without_optimiser_state_is_compared_on_what_it_holds(tmp_path) -> None:
    """A payload too old or too bare to recover the settings from is compared without them (as in session 19)."""
    path = tmp_path / "m.pt.ckpt"
    torch.save({"format": CHECKPOINT_FORMAT, "identity_json": json.dumps({"seed": 0}), "state_json": "{}"}, path)
    assert optimizer_settings(torch.load(path, weights_only=True)) == {}
    assert read_checkpoint(path, {"seed": 0, "learning_rate": 1e-3, "weight_decay": 0.0})["format"]
    with pytest.raises(ValueError, match=r"differs in seed\)"):
        read_checkpoint(path, {"seed": 1, "learning_rate": 1e-3})


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("layout") / "mocks.h5"
    params = TargetTransform().inverse(np.random.default_rng(5).random((200, 10)))
    write_synthetic_store(path, 200, seed=5, params=params)
    return path


def _cfg(epochs: int, memory_limit_bytes: int) -> TrainConfig:
    return TrainConfig(machine="A", arch="crnet", epochs=epochs, batch_size=32, seed=1, progress=False,
                       architecture=TINY_CRNET, memory_limit_bytes=memory_limit_bytes, block_size=64)


def test_a_resume_across_the_memory_limit_is_refused(store, tmp_path) -> None:
    in_memory, streamed = 1 << 30, 0
    train(store, tmp_path / "mem.pt", _cfg(1, in_memory))
    with pytest.raises(ValueError, match=r"differs in stream_block_size\)"):
        train(store, tmp_path / "mem.pt", _cfg(2, streamed), resume=True)
    assert len(train(store, tmp_path / "mem.pt", _cfg(2, in_memory), resume=True).history) == 2
    train(store, tmp_path / "st.pt", _cfg(1, streamed))
    with pytest.raises(ValueError, match=r"differs in stream_block_size\)"):
        train(store, tmp_path / "st.pt", _cfg(2, in_memory), resume=True)
    # any limit below the records' size streams them the same way: the limit itself is not compared
    assert len(train(store, tmp_path / "st.pt", _cfg(2, 1000), resume=True).history) == 2


def test_cli_names_memory_gb_for_a_resume_across_the_limit(store, tmp_path) -> None:
    runner = CliRunner()
    args = ["train", "--store", str(store), "--machine", "A", "--arch", "crnet", "--out", str(tmp_path / "m.pt"),
            "--batch-size", "32", "--no-progress", "--threads", "1", "--epochs"]
    # the default crnet network (a few seconds for one epoch of 200 records)
    assert runner.invoke(app, [*args, "1"]).exit_code == 0
    res = runner.invoke(app, [*args, "2", "--resume", "--memory-gb", "0"])
    assert res.exit_code == 2 and "differs in --memory-gb)" in res.output, res.output
