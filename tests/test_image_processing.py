"""CSGImageProcessor on its own: what it takes from a config, every input kind it accepts, the exact
normalisation, the conversions (RGB -> grey, 16-bit -> 8-bit), what it refuses, save/load, crop_pct."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import make_config
from PIL import Image
from transformers import AutoImageProcessor

import csg_hub
from csg_hub import CSGImageProcessor


def _grey(height: int = 20, width: int = 30, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width), dtype=np.uint8)


def _rgb(height: int = 20, width: int = 30, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _pixels(processor, images) -> torch.Tensor:
    return processor(images)["pixel_values"]


def _expected_constant(value: float, processor: CSGImageProcessor) -> torch.Tensor:
    # (value / 255 - mean) / std per channel, in float64
    mean, std = torch.tensor(processor.mean, dtype=torch.float64), torch.tensor(processor.std, dtype=torch.float64)
    return ((value / 255 - mean) / std).view(-1, 1, 1).expand(processor.input_size).float()


@pytest.mark.parametrize(
    "config",
    [make_config(), make_config(in_chans=3, image_size=48), make_config(image_mean=[0.2], image_std=[0.7])],
    ids=["grey", "rgb", "custom-normalisation"],
)
def test_from_config_takes_the_config_data_config(config):
    processor = CSGImageProcessor.from_config(config)
    data = config.data_config
    assert processor.input_size == list(data["input_size"])
    assert tuple(processor.mean) == data["mean"] and tuple(processor.std) == data["std"]
    assert processor.data_config == data
    assert isinstance(csg_hub.CSGImageProcessor.from_config(config), csg_hub.CSGImageProcessor)


@pytest.mark.parametrize("in_chans", [1, 3])
def test_a_uniform_grey_image_normalises_exactly(in_chans):
    processor = CSGImageProcessor.from_config(make_config(in_chans=in_chans, image_size=24))
    grey = np.full((20, 30), 128, dtype=np.uint8)  # another size: the resize runs, and keeps a constant image
    for image in (Image.fromarray(grey), Image.fromarray(grey).convert("RGB")):
        pixels = _pixels(processor, image)
        assert pixels.shape == (1, in_chans, 24, 24) and pixels.dtype == torch.float32
        torch.testing.assert_close(pixels[0], _expected_constant(128, processor), atol=1e-6, rtol=0)


def test_every_input_kind_of_a_grey_model():
    processor = CSGImageProcessor.from_config(make_config(image_size=16))
    grey = _grey()
    reference = _pixels(processor, Image.fromarray(grey))
    assert reference.shape == (1, 1, 16, 16)
    assert torch.equal(_pixels(processor, grey), reference)  # H x W
    assert torch.equal(_pixels(processor, grey[..., None]), reference)  # H x W x 1
    assert torch.equal(_pixels(processor, grey[None]), reference)  # 1 x H x W
    assert torch.equal(_pixels(processor, torch.from_numpy(grey)), reference)
    # an RGB image goes through PIL's own RGB -> L conversion
    rgb = Image.fromarray(_rgb())
    assert torch.equal(_pixels(processor, rgb), _pixels(processor, rgb.convert("L")))
    assert not torch.equal(_pixels(processor, rgb), _pixels(processor, Image.fromarray(_rgb()[..., 0])))


def test_every_input_kind_of_an_rgb_model():
    processor = CSGImageProcessor.from_config(make_config(in_chans=3, image_size=16))
    rgb = _rgb()
    reference = _pixels(processor, Image.fromarray(rgb))
    assert reference.shape == (1, 3, 16, 16)
    assert torch.equal(_pixels(processor, rgb), reference)  # H x W x C
    assert torch.equal(_pixels(processor, np.ascontiguousarray(rgb.transpose(2, 0, 1))), reference)  # C x H x W
    assert torch.equal(_pixels(processor, torch.from_numpy(rgb)), reference)
    # a grey image is replicated to three equal channels
    grey = _pixels(processor, Image.fromarray(_grey()))
    assert grey.shape == (1, 3, 16, 16)
    mean, std = torch.tensor(processor.mean).view(3, 1, 1), torch.tensor(processor.std).view(3, 1, 1)
    unnormalised = grey[0] * std + mean
    torch.testing.assert_close(unnormalised[0], unnormalised[1], atol=1e-6, rtol=0)
    torch.testing.assert_close(unnormalised[0], unnormalised[2], atol=1e-6, rtol=0)


def test_lists_and_batches_stack_to_n_images():
    processor = CSGImageProcessor.from_config(make_config(image_size=16))
    images = [_grey(seed=i) for i in range(3)]
    pixels = _pixels(processor, [Image.fromarray(images[0]), images[1], torch.from_numpy(images[2])])
    assert pixels.shape == (3, 1, 16, 16)
    for i, image in enumerate(images):
        assert torch.equal(pixels[i], _pixels(processor, image)[0])
    assert torch.equal(_pixels(processor, np.stack(images)[:, None]), pixels)  # N x 1 x H x W
    assert torch.equal(_pixels(processor, torch.from_numpy(np.stack(images)[..., None])), pixels)  # N x H x W x 1
    assert torch.equal(_pixels(processor, [[images[0]], [images[1], images[2]]]), pixels)  # nested lists flatten


def test_sixteen_bit_grey_is_scaled_not_clipped():
    processor = CSGImageProcessor.from_config(make_config(image_size=8))
    sixteen = Image.fromarray(np.full((10, 10), 100 * 257, dtype=np.uint16))
    assert sixteen.mode.startswith("I;16")
    pixels = _pixels(processor, sixteen)
    torch.testing.assert_close(pixels[0], _expected_constant(100, processor), atol=1e-6, rtol=0)
    assert not torch.allclose(pixels[0], _expected_constant(255, processor))  # PIL's own convert("L") clips


def test_what_the_processor_refuses():
    processor = CSGImageProcessor.from_config(make_config(image_size=16))
    with pytest.raises(ValueError, match="uint8"):
        processor(np.zeros((16, 16), dtype=np.float32))
    with pytest.raises(ValueError, match="uint8"):
        processor(torch.zeros(1, 16, 16))
    with pytest.raises(ValueError, match="return_tensors='pt'"):
        processor(_grey(), return_tensors="np")
    with pytest.raises(TypeError, match="no preprocessing options.*do_resize"):
        processor(_grey(), do_resize=False)
    with pytest.raises(ValueError, match="2 or 3 dimensions or a batch of 4"):
        processor(np.zeros((1, 1, 1, 16, 16), dtype=np.uint8))
    with pytest.raises(ValueError, match="mean has 2 values for a 3-channel input"):
        CSGImageProcessor(input_size=[3, 16, 16], mean=[0.5, 0.5], std=[0.5, 0.5, 0.5])
    with pytest.raises(ValueError, match="std has 3 values for a 1-channel input"):
        CSGImageProcessor(input_size=[1, 16, 16], mean=[0.5], std=[0.5, 0.5, 0.5])
    with pytest.raises(ValueError, match="crop_mode 'center'"):
        CSGImageProcessor(input_size=[1, 16, 16], mean=[0.5], std=[0.5], crop_mode="squash")
    with pytest.raises(ValueError, match="input_size"):
        CSGImageProcessor(input_size=[1, 16], mean=[0.5], std=[0.5])
    with pytest.raises(ValueError, match="crop_pct"):
        CSGImageProcessor(input_size=[1, 16, 16], mean=[0.5], std=[0.5], crop_pct=1.5)
    with pytest.raises(ValueError, match="1- or 3-channel"):
        CSGImageProcessor(input_size=[2, 16, 16], mean=[0.5, 0.5], std=[0.5, 0.5])


@pytest.mark.parametrize("in_chans", [1, 3])
def test_save_and_auto_load_round_trip(tmp_path, in_chans):
    processor = CSGImageProcessor(
        input_size=[in_chans, 12, 14], mean=[0.3] * in_chans, std=[0.6] * in_chans, interpolation="bicubic",
        crop_pct=0.875,
    )  # fmt: skip
    processor.save_pretrained(tmp_path)
    loaded = AutoImageProcessor.from_pretrained(tmp_path)  # finds the class: `import csg_hub` registered it
    assert type(loaded) is CSGImageProcessor
    assert loaded.data_config == processor.data_config
    images = [_rgb(seed=1), _grey(seed=2)]
    assert torch.equal(_pixels(loaded, images), _pixels(processor, images))


def test_crop_pct_resizes_larger_and_centre_crops():
    image = Image.fromarray(_grey(64, 64))
    cropped = CSGImageProcessor(input_size=[1, 16, 16], mean=[0.5], std=[0.5], crop_pct=0.5)
    whole = CSGImageProcessor(input_size=[1, 32, 32], mean=[0.5], std=[0.5])
    pixels = _pixels(cropped, image)
    assert pixels.shape == (1, 1, 16, 16)  # still the model's input size
    # resized to 16 / 0.5 = 32, then the centre 16 x 16 kept
    assert torch.equal(pixels, _pixels(whole, image)[..., 8:24, 8:24])


def test_a_processor_file_edited_after_saving_is_refused_by_every_loader(tmp_path):
    """transformers 5.25's AutoImageProcessor builds the processor from preprocessor_config.json alone
    (`from_dict`), never seeing config.json: the file carries the data config it was made from, and the model's
    own loader compares a local folder's processor file with its config.json."""
    import json

    model = csg_hub.CSGForImageClassification(make_config("test_resnet", slice_size=8, code_dim=16))
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert saved["config_data_config"]["mean"] == list(model.config.data_config["mean"])
    CSGImageProcessor.from_dict(saved)  # as saved: fine
    with pytest.raises(ValueError, match=r"preprocessor_config\.json of this processor disagrees.*mean \[0\.75\]"):
        CSGImageProcessor.from_dict({**saved, "mean": [0.75]})
    # an older file without the record, edited: the model's loader refuses the folder
    del saved["config_data_config"]
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({**saved, "interpolation": "bicubic"}))
    with pytest.raises(ValueError, match=r"disagrees with its config\.json.*interpolation bicubic vs"):
        csg_hub.CSGForImageClassification.from_pretrained(tmp_path)


def test_a_corrupt_processor_record_or_file_gets_a_clear_error(tmp_path):
    import json

    model = csg_hub.CSGForImageClassification(make_config("test_resnet", slice_size=8, code_dim=16))
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    for record in ("mean", {"mean": [0.5]}):
        with pytest.raises(ValueError, match=r"config_data_config .* lacks .*input_size"):
            CSGImageProcessor.from_dict({**saved, "config_data_config": record})
    (tmp_path / "preprocessor_config.json").write_text("{not json")
    with pytest.raises(csg_hub.CheckpointError, match=r"preprocessor_config\.json is not valid JSON"):
        csg_hub.CSGForImageClassification.from_pretrained(tmp_path)
