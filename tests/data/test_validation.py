"""DataModule settings are checked at construction, before any face is aligned, naming the recipe key."""

import pytest

from privgan.data import FaceIdentityDataModule, GanFaceDataModule
from privgan.data.synthetic import SyntheticIdentityDataModule


@pytest.mark.parametrize(("cls", "kwargs", "key"), [
    (FaceIdentityDataModule, {"n_identities": -1}, "data.init_args.n_identities"),
    (FaceIdentityDataModule, {"image_size": 0}, "data.init_args.image_size"),
    (FaceIdentityDataModule, {"train_fraction": 1.5}, "data.init_args.train_fraction"),
    (FaceIdentityDataModule, {"min_images": 30, "max_images": 10}, "data.init_args.max_images"),
    (GanFaceDataModule, {"image_size": 0}, "data.init_args.image_size"),
    (GanFaceDataModule, {"design": "lopsided"}, "data.init_args.design"),
    (GanFaceDataModule, {"n_nonmember_identities": 0}, "data.init_args.n_nonmember_identities"),
    (SyntheticIdentityDataModule, {"n_identities": 1}, "data.init_args.n_identities"),
])
def test_bad_data_settings_name_their_key(cls, kwargs, key, tmp_path):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        cls(root=str(tmp_path), **kwargs) if cls is not SyntheticIdentityDataModule else cls(**kwargs)
