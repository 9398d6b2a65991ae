"""Public pretraining then DP fine-tuning: the public data keeps clear of the study's people (and a public model that
saw them is refused, by name); a checkpoint that does not fit says which keys; a 2-epoch DP fine-tune runs from a tiny
public checkpoint with ε spent on the study's photos only."""

import json
import math

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from PIL import Image

from privgan.callbacks import InitFrom
from privgan.data import FaceIdentityDataModule
from privgan.data.people import OverlapError, people_in_manifest
from privgan.modules import SplitClassifier
from privgan.modules.warm_start import WarmStartError, load_weights, select_trainable


@pytest.fixture(scope="module")
def face_tree(tmp_path_factory):
    """12 'people', 6 pre-cropped 16 px photos each: a smooth colour pattern per person plus noise per photo."""
    root = tmp_path_factory.mktemp("people")
    g = torch.Generator().manual_seed(0)
    for p in range(12):
        base = torch.nn.functional.interpolate(torch.rand(1, 3, 4, 4, generator=g), size=(16, 16), mode="bilinear")[0]
        (root / f"person_{p:02d}").mkdir()
        for k in range(6):
            img = (base + 0.1 * torch.randn(3, 16, 16, generator=g)).clamp(0, 1)
            Image.fromarray((img.permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(root / f"person_{p:02d}" / f"{k}.png")
    return root


def datamodule(root, **kw):
    args = dict(root=str(root), n_identities=3, min_images=6, max_images=None, aux_identities=2, aux_max_images=2,
                image_size=16, batch_size=8, align="none")
    return FaceIdentityDataModule(**(args | kw))


def trainer(run, epochs, callbacks=()):
    return L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                     default_root_dir=run, callbacks=[*callbacks, ModelCheckpoint(dirpath=None, save_last=True)])


@pytest.fixture(scope="module")
def runs(face_tree, tmp_path_factory):
    """The study's split, and a public model trained on people outside it (1 epoch)."""
    base = tmp_path_factory.mktemp("runs")
    study = datamodule(face_tree)
    study.setup("fit")
    study_manifest = study.manifest_.save(base / "study" / "manifest.json")
    public = datamodule(face_tree, n_identities=6, aux_identities=0, exclude_people_of=[str(study_manifest)])
    trainer(base / "public", 1).fit(SplitClassifier(width=8), datamodule=public)
    return base, study_manifest


def test_public_data_keeps_clear_of_every_person_of_the_study(runs):
    base, study_manifest = runs
    study, public = people_in_manifest(study_manifest), people_in_manifest(base / "public" / "manifest.json")
    assert len(study) == 3 + 2 and len(public) == 6 and not study & public  # members, held-out and auxiliary people
    assert json.loads((base / "public" / "manifest.json").read_text())["excluded_people_of"] == [str(study_manifest)]


def test_a_2_epoch_dp_fine_tune_from_the_public_checkpoint(runs, face_tree):
    base, study_manifest = runs
    ckpt = base / "public" / "checkpoints" / "last.ckpt"
    init = InitFrom(str(ckpt), init_exclude=["net.backbone.head"])
    model = SplitClassifier(width=8, dp={"noise_multiplier": 1.0, "max_grad_norm": 1.0})
    t = trainer(base / "finetune", 2, [init])
    t.fit(model, datamodule=datamodule(face_tree, manifest=str(study_manifest)))
    public_state = torch.load(ckpt, weights_only=False)["state_dict"]
    assert len(init.loaded) > 10 and not any(k.startswith("net.backbone.head") for k in init.loaded)
    assert public_state["net.backbone.head.2.weight"].shape[0] == 6 and model.net.backbone.head[2].weight.shape[0] == 3
    eps = float(t.callback_metrics["dp/epsilon"])
    assert 0 < eps < math.inf  # spent on the 3 study people's photos: 2 epochs of their data, nothing for the public's
    assert model._dp.sample_rate == pytest.approx(1 / 2)  # batch 8 of the study's 9 training photos (public's 18: 1 / 3)


def test_a_public_model_that_saw_study_people_is_refused_by_name(runs, face_tree):
    base, study_manifest = runs
    leaky = datamodule(face_tree, n_identities=4, aux_identities=0)  # no exclusion: the same people as the study
    trainer(base / "leaky_public", 1).fit(SplitClassifier(width=8), datamodule=leaky)
    shared = sorted(people_in_manifest(base / "leaky_public" / "manifest.json") & people_in_manifest(study_manifest))
    assert shared
    t = trainer(base / "refused", 1, [InitFrom(str(base / "leaky_public" / "checkpoints" / "last.ckpt"),
                                               init_exclude=["net.backbone.head"])])
    with pytest.raises(OverlapError, match=rf"{len(shared)} people are in both.*{shared[0]}"):
        t.fit(SplitClassifier(width=8), datamodule=datamodule(face_tree, manifest=str(study_manifest)))
    with pytest.raises(OverlapError, match=shared[0]):  # and a public split drawn from a study's own manifest
        datamodule(face_tree, manifest=str(study_manifest), exclude_people_of=[str(study_manifest)]).setup("fit")


def test_a_checkpoint_that_does_not_fit_lists_the_keys(runs):
    base, _ = runs
    ckpt = base / "public" / "checkpoints" / "last.ckpt"
    with pytest.raises(WarmStartError, match=r"shape checkpoint -> model \(\d+\): net\.backbone\.head\.2\.bias \(6,\) -> \(3,\)"):
        load_weights(SplitClassifier(width=8, num_classes=3), ckpt)  # the head: a different number of people
    with pytest.raises(WarmStartError, match=r"\(40\): .*stage1\.conv1\.weight \(8, 8, 3, 3\) -> \(16, 16, 3, 3\).*init_exclude"):
        load_weights(SplitClassifier(width=16, num_classes=6), ckpt)
    with pytest.raises(WarmStartError, match="no checkpoint file"):
        load_weights(SplitClassifier(width=8, num_classes=6), base / "nope.ckpt")
    assert load_weights(SplitClassifier(width=8, num_classes=6), ckpt)  # the same architecture loads whole


def test_trainable_selects_parameters_by_name_prefix():
    m = SplitClassifier(width=8, num_classes=3)
    kept = select_trainable(m, ["net.backbone.head", "net.backbone.stage4"])
    assert kept and all(k.startswith(("net.backbone.head", "net.backbone.stage4")) for k in kept)
    assert not m.net.backbone.stem[0].weight.requires_grad and m.net.backbone.head[2].weight.requires_grad
    with pytest.raises(WarmStartError, match="net.backbone.nope match no parameter.*net.backbone"):
        select_trainable(m, ["net.backbone.nope"])
    assert len(select_trainable(m, None)) == len(list(m.parameters()))


def test_person_level_dp_fine_tune_spends_epsilon_per_person(runs, face_tree):
    """dp.unit: identity through the trainer: people are drawn whole, ε is the accountant's at the identity rate,
    and the photo unit reports the group-privacy bound for its largest person instead."""
    from privgan.defences.identity_dp import IdentityDPOptimizer, group_privacy, identity_epsilon

    base, study_manifest = runs
    init = InitFrom(str(base / "public" / "checkpoints" / "last.ckpt"), init_exclude=["net.backbone.head"])
    model = SplitClassifier(width=8, dp={"noise_multiplier": 1.0, "max_grad_norm": 1.0, "unit": "identity",
                                         "identities_per_step": 1.5, "accountant": "rdp"})
    dm = datamodule(face_tree, manifest=str(study_manifest))
    t = trainer(base / "by_person", 2, [init])
    t.fit(model, datamodule=dm)
    assert isinstance(model._dp.optimizer, IdentityDPOptimizer) and not model._dp.optimizer.pending
    assert model._dp.sample_rate == pytest.approx(1.5 / 3)  # 1.5 of the 3 study people per step
    steps = 2 * 2  # 1 / q steps per epoch
    eps = float(t.callback_metrics["dp/epsilon_identity"])
    assert eps == pytest.approx(identity_epsilon(1.0, 0.5, steps, 1e-5, "rdp"), rel=1e-6)
    assert eps == pytest.approx(float(t.callback_metrics["dp/epsilon"]))
    ids = dm.train_identities
    for batch in t.train_dataloader.batch_sampler:  # whole people only
        assert sorted(batch) == sorted(i for i in range(len(ids)) if int(ids[i]) in set(ids[batch].tolist()))

    photo = SplitClassifier(width=8, dp={"noise_multiplier": 1.0, "max_grad_norm": 1.0})
    t2 = trainer(base / "by_photo", 1)
    t2.fit(photo, datamodule=datamodule(face_tree, manifest=str(study_manifest)))
    e, d = float(t2.callback_metrics["dp/epsilon"]), 1e-5
    assert photo._dp.largest_identity == 3  # 3 training photos per person
    assert float(t2.callback_metrics["dp/epsilon_identity"]) == pytest.approx(group_privacy(e, d, 3)[0])
    assert float(t2.callback_metrics["dp/delta_identity"]) == pytest.approx(group_privacy(e, d, 3)[1])


def test_privgan_data_split_writes_a_stacked_recipes_split_without_training(face_tree, tmp_path, capsys):
    import yaml

    from privgan.cli import main as cli_main

    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump({"data": {"class_path": "privgan.data.FaceIdentityDataModule", "init_args": {
        "root": str(face_tree), "n_identities": 5, "min_images": 6, "max_images": None, "aux_identities": 2,
        "image_size": 16, "align": "none"}}}))
    over = tmp_path / "over.yaml"
    over.write_text(yaml.safe_dump({"data": {"init_args": {"n_identities": 3}}}))
    out = tmp_path / "study" / "manifest.json"
    assert cli_main(["data", "split", "--config", str(base), "--config", str(over), "--set", "seed=4", "--out", str(out)]) == 0
    m = json.loads(out.read_text())
    assert len(m["identities"]) == 3 and len(m["auxiliary"]) == 2 and m["seed"] == 4  # the later recipe and --set win
    assert "identities 3" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no data: class_path"):
        cli_main(["data", "split", "--config", str(over), "--out", str(out)])


def test_shadow_models_start_from_the_public_weights_too(runs, face_tree):
    """LiRA's shadow models must be trained as the target was: from the public start, not from scratch."""
    base, study_manifest = runs
    ckpt = base / "public" / "checkpoints" / "last.ckpt"
    model = SplitClassifier(width=8)
    t = trainer(base / "shadow", 1, [InitFrom(str(ckpt), init_exclude=["net.backbone.head"])])
    t.fit(model, datamodule=datamodule(face_tree, manifest=str(study_manifest)))
    fresh = model.make_network()
    public = torch.load(ckpt, weights_only=False)["state_dict"]
    assert torch.equal(fresh.backbone.stem[0].weight, public["net.backbone.stem.0.weight"])
    assert fresh.backbone.head[2].weight.shape[0] == 3  # the head: initialised anew, sized for the study


def test_a_gan_fine_tune_restarts_the_ema_warm_up_so_its_samples_follow_the_fine_tune(tmp_path):
    """The public run's EMA step count would keep the sampler (decay 0.999) at the public GAN for a short fine-tune."""
    from privgan.modules.gan import GAN

    kw = dict(image_size=32, latent_dim=8, g_width=4, d_width=4)
    public = GAN(**kw)
    public.ema_updates.fill_(50_000)
    torch.save({"state_dict": public.state_dict()}, tmp_path / "public.ckpt")
    fine = GAN(**kw)
    InitFrom(str(tmp_path / "public.ckpt"), check_people=False).setup(None, fine, "fit")
    assert torch.equal(next(fine.generator.parameters()), next(public.generator.parameters()))  # the weights came
    assert int(fine.ema_updates) == 0  # the warm-up did not
    with torch.no_grad():
        next(fine.generator.parameters()).add_(1.0)  # one "fine-tune" step's worth of change
    fine._update_ema()
    moved = (next(fine.generator_ema.parameters()) - next(public.generator_ema.parameters())).abs().mean()
    assert moved > 0.8  # warm-up decay 0.1: the EMA took 90 % of the change (0.999 would take 0.1 %)
