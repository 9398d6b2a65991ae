"""Bad settings are named at construction, before any data work: the key, the valid range, the value."""

import time

import pytest

from privgan.defences.activation_noise import ActivationNoise
from privgan.modules import GAN, SplitClassifier


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"width": 0}, ("width", "model.init_args.width", ">= 1", "0")),
    ({"width": -3}, ("width", ">= 1")),
    ({"activation_noise": -0.5}, ("activation_noise", ">= 0", "-0.5")),
    ({"activation_noise": float("nan")}, ("activation_noise", "finite")),
    ({"clip_norm": -1.0}, ("clip_norm", "> 0", "null")),
    ({"clip_norm": 0.0}, ("clip_norm", "> 0")),
    ({"norm": "layer"}, ("norm", "group, batch, none", "'layer'")),
    ({"num_classes": 1}, ("num_classes", ">= 2")),
    ({"lr": 0.0}, ("lr", "> 0")),
    ({"weight_decay": -1e-4}, ("weight_decay", ">= 0")),
])
def test_split_classifier_names_the_bad_key_at_construction(kwargs, words):
    t0 = time.perf_counter()
    with pytest.raises(ValueError) as e:
        SplitClassifier(**kwargs)  # no num_classes, no datamodule: nothing else has run
    assert all(w in str(e.value) for w in words), str(e.value)
    assert time.perf_counter() - t0 < 5


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"g_width": 0}, ("g_width", ">= 1")),
    ({"d_width": 0}, ("d_width", ">= 1")),
    ({"latent_dim": 0}, ("latent_dim", ">= 1")),
    ({"image_size": 0}, ("image_size", "32, 64")),
    ({"g_norm": "layer"}, ("g_norm", "batch, group, none")),
    ({"d_norm": "batch"}, ("d_norm", "spectral, group, none")),
    ({"lr_d": -1.0}, ("lr_d", "> 0")),
    ({"betas": (0.5, 1.5)}, ("betas", "[0, 1)")),
    ({"ema_decay": 1.0}, ("ema_decay", "[0, 1)")),
    ({"r1_gamma": -1.0}, ("r1_gamma", ">= 0")),
])
def test_gan_names_the_bad_key_at_construction(kwargs, words):
    with pytest.raises(ValueError) as e:
        GAN(**kwargs)
    assert all(w in str(e.value) for w in words), str(e.value)


def test_activation_noise_names_its_recipe_keys():
    with pytest.raises(ValueError, match=r"activation_noise.*>= 0"):
        ActivationNoise(sigma=-1.0)
    with pytest.raises(ValueError, match=r"clip_norm.*> 0"):
        ActivationNoise(sigma=1.0, clip_norm=-2.0)
    assert ActivationNoise(sigma=0, clip_norm=None).sigma == 0.0


def test_good_values_still_build():
    m = SplitClassifier(num_classes=3, width=4, norm="none", activation_noise=0, clip_norm=1)
    assert m.net is not None
    assert GAN(image_size=32, latent_dim=8, g_width=4, d_width=4, d_norm=None).hparams.d_norm == "spectral"
