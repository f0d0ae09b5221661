"""The training engine refuses to produce or continue a silently wrong result.

Non-finite losses and weights, a resume against other data, and a planted resume
file each stop with one clear error; nothing half-written is left behind.
"""

from __future__ import annotations

import copy
import math
import shutil

import pytest
import torch
from torch import nn

from pixsup.cam.training import train_cam
from pixsup.checkpoints import CheckpointError, read_trained, resume_path, save_trained
from pixsup.config import ConfigError, parse_params
from pixsup.steps import train_cam as train_cam_step

from conftest import write_params


def _train(root, raw, out, **kw):
    return train_cam(parse_params(raw).cam_train, root, "train_aug", "support", out, progress=False, **kw)


class _Planted:
    """An object whose unpickling runs code: what a planted resume file could hold."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (shutil.copyfile, (__file__, self.marker))


def test_a_planted_resume_file_runs_no_code(small_voc, small_raw, tmp_path):
    out = tmp_path / "m.pt"
    marker = tmp_path / "code_ran"
    torch.save({"identity": _Planted(marker)}, resume_path(out))
    with pytest.raises(
        CheckpointError,
        match=r"m\.pt\.resume\.pt: refused, it holds objects other than tensors.*"
        r"delete it to start over",
    ):
        _train(small_voc, small_raw, out)
    assert not marker.exists()


def test_resume_against_other_data_is_refused(small_voc, small_raw, tmp_path):
    root = tmp_path / "VOC2012"
    shutil.copytree(small_voc, root)
    out = tmp_path / "m.pt"
    assert _train(root, small_raw, out, stop_after_epoch=1) == {"finished": False, "epochs_done": 1}
    split = root / "ImageSets" / "Segmentation" / "train_aug.txt"
    ids = split.read_text().split()
    split.write_text("\n".join(ids[:-8]) + "\n")  # 16 images instead of 24: another schedule length
    with pytest.raises(CheckpointError, match=r"different params/inputs \(data differ\); delete it to start over"):
        _train(root, small_raw, out)
    # The same data under another folder is other data too.
    split.write_text("\n".join(ids) + "\n")
    moved = tmp_path / "elsewhere" / "VOC2012"
    shutil.copytree(root, moved)
    with pytest.raises(CheckpointError, match="data differ"):
        _train(moved, small_raw, out)
    assert _train(root, small_raw, out)["finished"]


def test_a_diverging_training_stops_with_one_line_and_writes_nothing(small_voc, small_raw, tmp_path, capsys):
    raw = copy.deepcopy(small_raw)
    raw["cam_train"]["lr"] = 1e30  # finite, but the first step sends the weights to infinity
    params = write_params(tmp_path / "params.yaml", raw)
    out = tmp_path / "m.pt"
    code = train_cam_step.main(
        ["--params", str(params), "--root", str(small_voc), "--variant", "support", "--out", str(out), "--quiet"]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "error: support: the loss is not finite at epoch 1, iteration 2" in err and "lower the learning" in err
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_the_schema_rejects_non_finite_numbers(value):
    with pytest.raises(ConfigError, match=r"cam_train\.lr: Input should be a finite number"):
        parse_params({"cam_train": {"lr": value}})
    with pytest.raises(ConfigError, match=r"pseudo_labels\.irn\.beta: Input should be a finite number"):
        parse_params({"pseudo_labels": {"irn": {"beta": value}}})


def test_weights_with_nan_are_neither_written_nor_read(tmp_path):
    net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    with torch.no_grad():
        net[0].bias[2] = math.nan
    with pytest.raises(
        CheckpointError, match=r"not written, 1 of 7 weight tensors hold NaN or infinity \(first: 0\.bias\)"
    ):
        save_trained(tmp_path / "nan.pt", "pixsup.test/1", net)
    assert list(tmp_path.iterdir()) == []
    # A file written by other means is refused on reading.
    torch.save({"format": "pixsup.test/1", "model": net.state_dict()}, tmp_path / "planted.pt")
    with pytest.raises(CheckpointError, match=r"planted\.pt: 1 weight tensors hold NaN or infinity"):
        read_trained(tmp_path / "planted.pt", "pixsup.test/1")


class _Points(torch.utils.data.Dataset):
    """Eight points of a line, one of which (``poisoned``) makes the loss NaN."""

    def __init__(self, poisoned: tuple[int, ...]) -> None:
        self.poisoned = poisoned

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        x = torch.tensor([float(i)])
        return {"image": x, "target": 2 * x, "poisoned": torch.tensor(i in self.poisoned)}

    def set_epoch(self, epoch: int) -> None:
        pass

    def identity(self) -> dict[str, object]:
        return {"points": 8, "poisoned": list(self.poisoned)}


def _fit_line(tmp_path, poisoned: tuple[int, ...], skips: int):
    from types import SimpleNamespace

    from pixsup.engine import TrainingTask, fit
    from pixsup.runtime.distributed import Ranks

    torch.manual_seed(0)
    model = nn.Linear(1, 1)

    def losses(net, batch, epoch):
        error = (net(batch["image"]) - batch["target"]) ** 2
        error = torch.where(batch["poisoned"][:, None], torch.full_like(error, math.nan), error)
        return {"loss": error.mean()}

    task = TrainingTask(
        name="line", model=model, dataset=_Points(poisoned), batch_size=2, batch_key="batch_size",
        param_groups=[{"params": list(model.parameters()), "lr": 0.01}], loss_columns=("loss",), losses=losses,
        save=lambda path: save_trained(path, "pixsup.line/1", model),
    )  # fmt: skip
    schedule = SimpleNamespace(
        seed=0, epochs=2, num_workers=0, momentum=0.0, weight_decay=0.0, poly_power=0.0, nonfinite_skips=skips
    )
    return fit(task, schedule, tmp_path / "line.pt", {}, Ranks(), progress=False), model


def test_non_finite_iterations_are_skipped_up_to_the_allowance(tmp_path):
    from pixsup.engine import NonFiniteLossError

    # Point 5 is in one batch per epoch: two non-finite iterations in the run.
    with pytest.raises(NonFiniteLossError, match=r"line: the loss is not finite at epoch 1"):
        _fit_line(tmp_path / "none", (5,), skips=0)
    with pytest.raises(NonFiniteLossError, match=r"line: the loss is not finite at epoch 2"):
        _fit_line(tmp_path / "one", (5,), skips=1)
    summary, model = _fit_line(tmp_path / "two", (5,), skips=2)
    assert summary["finished"] and summary["iterations"] == 8 and math.isfinite(summary["final_epoch_losses"]["loss"])
    rows = (tmp_path / "two" / "line.pt.losses.csv").read_text().splitlines()[1:]
    assert [row.split(",")[1] for row in rows] == [str(i) for i in range(1, 9)]
    assert sum(row.endswith(",nan") for row in rows) == 2
    assert all(torch.isfinite(p).all() for p in model.parameters())
