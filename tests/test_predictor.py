import numpy as np
import pytest
import torch

from src.audio.deltas import stack_deltas
from src.experiments import EXPERIMENTS, complete_config, get_experiment
from src.predict.prediction_sets import clip_means
from src.predict.predictor import Predictor, count_tiles, make_tiles, tile_steps
from src.stacking.experiments import FIRST_LEVEL
from src.augment.transforms import ImageToTensor, get_transforms
from tests.helpers import tiny_model


@pytest.mark.parametrize("frames", [9, 100, 256, 257, 300, 1000])
def test_tiles_cover_the_clip(frames):
    rng = np.random.default_rng(frames)
    spec = rng.normal(-40, 10, (16, frames)).astype(np.float32)
    tiles = make_tiles(spec, 256, 64)
    assert tiles.shape == (count_tiles(frames, 256, 64), 16, 256)
    if frames <= 256:
        # short clip: centred with minimum padding, exactly as the validation transform
        expected = get_transforms(train=False, size=256).transforms[0](spec)
        assert np.array_equal(tiles[0], expected)
    else:
        # long clip: padded with its minimum evenly on both sides up to the tile grid (odd frame on the right)
        grid = (len(tiles) - 1) * 64 + 256
        assert grid >= frames > grid - 64
        left = (grid - frames) // 2
        for k, tile in enumerate(tiles):
            start = k * 64 - left  # where the tile starts in the unpadded clip
            for column in range(256):
                frame = start + column
                expected = spec[:, frame] if 0 <= frame < frames else np.full(16, spec.min(), np.float32)
                assert np.array_equal(tile[:, column], expected)
        # the pad is split evenly: the first tile has `left` padded frames, the last one the rest
        assert np.all(tiles[0][:, :left] == spec.min()) and np.array_equal(tiles[0][:, left], spec[:, 0])
        assert np.array_equal(tiles[-1][:, 255 - (grid - frames - left)], spec[:, -1])


def test_stack_deltas_equals_image_to_tensor():
    images = np.random.default_rng(0).normal(-40, 15, (3, 32, 256)).astype(np.float32)
    batched = stack_deltas(torch.from_numpy(images))
    one_by_one = torch.stack([ImageToTensor()(image) for image in images])
    assert torch.allclose(batched, one_by_one, atol=1e-5)


def test_batched_prediction_equals_one_clip_at_a_time():
    rng = np.random.default_rng(1)
    specs = [rng.normal(-40, 10, (32, n)).astype(np.float32) for n in (40, 130, 64, 500, 77)]
    models = [tiny_model(), tiny_model(model="AuxSkipAttention")]
    predictor = Predictor(models, tile_size=64, step=16, batch_size=7)  # batches cross clip boundaries
    tiles, offsets, clips = predictor.predict(specs)
    assert offsets[-1] == len(tiles[0]) == len(tiles[1])
    for m, model in enumerate(models):
        for i, spec in enumerate(specs):
            inputs = torch.stack([ImageToTensor()(np.ascontiguousarray(t)) for t in make_tiles(spec, 64, 16)])
            expected = model.predict(inputs).numpy()
            assert np.allclose(tiles[m][offsets[i]:offsets[i + 1]], expected, atol=1e-5)
            assert np.allclose(clips[m][i], expected.mean(0), atol=1e-5)


def test_clip_means():
    tiles = np.arange(12, dtype=np.float32).reshape(6, 2)
    assert clip_means(tiles, np.array([0, 1, 4, 6])).tolist() == [[0, 1], [4, 5], [9, 10]]


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_tiles_of_every_experiment_leave_no_frame_unseen(name):
    """A step longer than the tile would skip audio between tiles (e.g. 64-frame tiles every 128)."""
    oof, test = tile_steps(get_experiment(name))
    assert 0 < oof <= get_experiment(name)["crop_size"] and 0 < test <= get_experiment(name)["crop_size"]


def test_tile_steps_of_the_2019_members_and_the_demo():
    # the final submission: out-of-fold predictions every 64 frames, test predictions every 128
    for name in FIRST_LEVEL:
        assert tile_steps(get_experiment(name)) == (64, 128), name
    assert tile_steps(get_experiment("demo")) == tile_steps(get_experiment("demo_skip")) == (32, 32)


def test_tile_step_overrides_and_old_configs():
    experiment = get_experiment("corr_noisy_007")
    assert tile_steps(experiment, step=32) == (32, 32)                  # --step: both
    assert tile_steps(experiment, test_step=256) == (64, 256)           # --test-step: test only
    assert tile_steps(experiment, step=32, test_step=96) == (32, 96)
    del experiment["test_tile_step"]                                    # saved before the key existed
    experiment = complete_config(experiment)                            # as predict_folds / tag.py read it
    assert tile_steps(experiment) == (64, 64)
    with pytest.raises(ValueError, match="tile steps"):
        tile_steps(experiment, step=0)
