"""The HDF5 layout: round trips through DataLoader workers, atomic writes, clear errors, and the
``scoreinv data`` commands."""

import json
import pickle

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import scoreinv
from scoreinv.app.cli import main
from scoreinv.config import PhantomDataConfig
from scoreinv.datasets import (
    H5ImageDataset,
    H5Writer,
    colour_crops,
    data_blocks,
    phantoms,
    read_h5_attributes,
    write_images_h5,
    write_phantoms_h5,
)

CONFIG = {"generator": "test", "family": "ellipses", "size": 16, "seed": 7, "angles": [0.5, 1.5]}


@pytest.fixture()
def images():
    return torch.rand(11, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def leftovers(folder):
    return sorted(path.name for path in folder.iterdir() if path.name.endswith(".tmp"))


def test_round_trip_through_dataloader_workers(tmp_path, images):
    measurements = torch.randn(11, 1, 5, 7, generator=torch.Generator().manual_seed(1))
    path = write_images_h5(tmp_path / "data.h5", images, CONFIG, measurements=measurements)
    with h5py.File(path, "r") as handle:
        assert handle["images"].dtype == np.float32 and handle["images"].chunks == (1, 3, 16, 16)
        assert handle["measurements"].shape == (11, 1, 5, 7)
    dataset = H5ImageDataset(path)
    assert len(dataset) == 11 and dataset.item_shape == (3, 16, 16)
    loader = DataLoader(dataset, batch_size=4, shuffle=False, num_workers=2)
    assert torch.equal(torch.cat(list(loader)), images)
    assert dataset[-1].dtype == torch.float32 and torch.equal(dataset[-1], images[-1])
    with pytest.raises(IndexError):
        dataset[11]
    assert torch.equal(torch.stack(list(H5ImageDataset(path, key="measurements"))), measurements)
    attributes = read_h5_attributes(path)
    assert attributes["config"] == CONFIG and dataset.config == CONFIG
    assert attributes["scoreinv_version"] == scoreinv.__version__
    assert attributes["created_by"] == "scoreinv.datasets.write_images_h5"
    with h5py.File(path, "r") as handle:  # stored as JSON text
        assert json.loads(handle.attrs["config"]) == CONFIG


def test_dataset_pickles_without_its_handle(tmp_path, images):
    dataset = H5ImageDataset(write_images_h5(tmp_path / "data.h5", images))
    assert torch.equal(dataset[3], images[3])  # opens the file in this process
    copy = pickle.loads(pickle.dumps(dataset))
    assert copy._handle is None
    assert torch.equal(copy[4], images[4])
    dataset.close()
    assert torch.equal(dataset[5], images[5])  # reopens


def test_training_on_the_file_matches_training_on_its_tensor(tmp_path):
    from conftest import tiny_model, tiny_model_config
    from scoreinv.config import TrainingConfig
    from scoreinv.training import train

    data = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    dataset = H5ImageDataset(write_images_h5(tmp_path / "train.h5", data))
    config = tiny_model_config()
    settings = TrainingConfig(steps=2, batch_size=4, warmup_steps=1, seed=1)
    models = []
    for source in (data, dataset):
        models.append(tiny_model(config, seed=0))
        train(models[-1], source, settings, progress=False)
    for (name, a), b in zip(models[0].state_dict().items(), models[1].state_dict().values()):
        assert torch.equal(a, b), name


def test_streaming_writer_appends_blocks(tmp_path, images):
    path = tmp_path / "sub" / "stream.h5"
    with H5Writer(path, PhantomDataConfig(n=11, size=16), chunk_rows=2) as writer:
        for start in range(0, 11, 4):
            writer.append(images=images[start:start + 4], measurements=images[start:start + 4, :1].numpy())
        assert len(writer) == 11 and not path.exists()
    assert torch.equal(torch.stack(list(H5ImageDataset(path))), images)
    assert read_h5_attributes(path)["config"]["kind"] == "phantoms"
    with h5py.File(path, "r") as handle:
        assert handle["images"].chunks == (2, 3, 16, 16)
    assert leftovers(path.parent) == []


def test_a_failing_write_leaves_no_partial_file(tmp_path, images):
    path = tmp_path / "data.h5"
    with pytest.raises(RuntimeError, match="killed"):
        with H5Writer(path) as writer:
            writer.append(images=images[:4])
            raise RuntimeError("killed mid-write")
    assert not path.exists() and leftovers(tmp_path) == []

    write_images_h5(path, images[:2], {"version": "old"})
    bad = images.clone()
    bad[5, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        with H5Writer(path, overwrite=True) as writer:
            writer.append(images=images[:4])
            writer.append(images=bad[4:8])
    with pytest.raises(ValueError, match="items must have shape"):
        with H5Writer(path, overwrite=True) as writer:
            writer.append(images=images[:4])
            writer.append(images=images[4:8, :1])
    with pytest.raises(FileExistsError, match="overwrite"):
        write_images_h5(path, images)
    # the earlier file survived every failure untouched
    assert read_h5_attributes(path)["config"] == {"version": "old"} and len(H5ImageDataset(path)) == 2
    assert leftovers(tmp_path) == []
    write_images_h5(path, images, overwrite=True)
    assert len(H5ImageDataset(path)) == 11


def test_clear_errors_for_missing_or_malformed_files(tmp_path, images):
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        H5ImageDataset(tmp_path / "missing.h5")
    not_hdf5 = tmp_path / "notes.h5"
    not_hdf5.write_text("not hdf5")
    with pytest.raises(ValueError, match="notes.h5 is not a readable HDF5 file"):
        H5ImageDataset(not_hdf5)
    path = write_images_h5(tmp_path / "data.h5", images, measurements=torch.zeros(11, 5))
    with pytest.raises(ValueError, match=r"data.h5 has no data set 'reconstructions' \(it holds: images, measurements\)"):
        H5ImageDataset(path, key="reconstructions")
    with pytest.raises(ValueError, match=r"'measurements' must have 4 dimensions \(N, C, H, W\), got shape \(11, 5\)"):
        H5ImageDataset(path, key="measurements")
    with pytest.raises(ValueError, match=r"images must have shape \(N, C, H, W\)"):
        write_images_h5(tmp_path / "flat.h5", images[0])
    with pytest.raises(ValueError, match="JSON-serialisable"):
        write_images_h5(tmp_path / "odd.h5", images, {"when": object()})
    assert not (tmp_path / "flat.h5").exists() and leftovers(tmp_path) == []


def test_generated_files_draw_their_blocks_from_one_generator(tmp_path):
    path = write_phantoms_h5(tmp_path / "p.h5", 10, 16, "mixed", seed=5, block_size=4)
    stored = torch.stack(list(H5ImageDataset(path)))
    config = PhantomDataConfig(family="mixed", n=10, size=16, seed=5, block_size=4)
    assert torch.equal(stored, torch.cat(list(data_blocks(config))))
    assert torch.equal(stored[:4], phantoms("mixed", 4, 16, seed=5))  # block 0 uses the seed itself
    assert not torch.equal(stored[4:8], stored[:4]) and not torch.equal(stored[4:8], phantoms("mixed", 4, 16, seed=6))
    assert read_h5_attributes(path)["config"] == config.model_dump(mode="json")


def test_cli_data_phantoms_and_colour_round_trips(tmp_path, capsys):
    out = tmp_path / "ct.h5"
    assert main(["data", "phantoms", str(out), "--n", "6", "--size", "32", "--family", "chest", "--seed", "9"]) == 0
    assert "wrote (6, 1, 32, 32) chest phantoms" in capsys.readouterr().out
    assert torch.equal(torch.stack(list(H5ImageDataset(out))), phantoms("chest", 6, 32, seed=9))
    attributes = read_h5_attributes(out)
    assert attributes["config"] == {"kind": "phantoms", "family": "chest", "n": 6, "size": 32, "seed": 9,
                                    "block_size": 256}
    assert attributes["created_by"] == "scoreinv data phantoms"

    out = tmp_path / "colour.h5"
    assert main(["data", "colour", str(out), "--n", "5", "--size", "32", "--seed", "2"]) == 0
    assert "wrote (5, 3, 32, 32) colour crops of histology+retina" in capsys.readouterr().out
    assert torch.equal(torch.stack(list(H5ImageDataset(out))), colour_crops(5, 32, seed=2))
    assert main(["data", "colour", str(out), "--n", "3", "--size", "32", "--sources", "retina",
                 "--no-augment", "--overwrite"]) == 0
    config = read_h5_attributes(out)["config"]
    assert config["sources"] == ["retina"] and config["augment"] is False and config["n"] == 3


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["phantoms", "{existing}", "--n", "4", "--size", "32"], "exists; pass --overwrite"),
        (["phantoms", "{new}", "--n", "4", "--size", "4"], "size: Input should be greater than or equal to 8"),
        (["phantoms", "{new}", "--n", "4", "--family", "lungs"], "family: Input should be 'ellipses', 'chest'"),
        (["phantoms", "{new}", "--n", "0"], "n: Input should be greater than or equal to 1"),
        (["colour", "{existing}", "--n", "4", "--size", "32"], "exists; pass --overwrite"),
        (["colour", "{new}", "--n", "4", "--size", "600"], "size: Input should be less than or equal to 512"),
        (["colour", "{new}", "--n", "4", "--sources", "brain"], "sources.0: Input should be 'histology'"),
        (["colour", "{new}", "--n", "4", "--size", "256", "--scale", "1", "3"], "do not fit the 512-pixel"),
        (["colour", "{folder}", "--n", "4", "--overwrite"], "is a folder"),
    ],
)
def test_cli_data_mistakes_give_one_line_and_exit_2(tmp_path, capsys, arguments, message):
    existing = tmp_path / "existing.h5"
    existing.write_bytes(b"keep me")
    paths = {"existing": existing, "new": tmp_path / "new.h5", "folder": tmp_path}
    assert main(["data", *(argument.format(**paths) for argument in arguments)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("scoreinv: error: ") and message in error and error.count("\n") == 1
    assert existing.read_bytes() == b"keep me" and not (tmp_path / "new.h5").exists()
