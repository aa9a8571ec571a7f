"""How a run names its backbone, and back: the packaged MiniLM by its pip package and version,
never a path of this machine; anything else as given. No model is built here."""

from importlib import metadata

import pytest

from utils.backbone import PACKAGE, packaged_backbone, parameter_from_record, portable_name
from utils.errors import CourseError


def test_the_packaged_minilm_is_named_by_its_package_and_version():
    name = portable_name(str(packaged_backbone()))
    assert name == f"{PACKAGE}=={metadata.version(PACKAGE)}"
    assert "/" not in name  # no path of this machine
    assert parameter_from_record(name) is None  # the parameters cell's default


def test_another_version_of_the_package_cannot_train_the_run_again():
    with pytest.raises(CourseError, match=rf"trained on {PACKAGE}==0\.0\.1, but this environment has "
                                          rf"{PACKAGE} {metadata.version(PACKAGE)}\. Install {PACKAGE}==0\.0\.1"):
        parameter_from_record(f"{PACKAGE}==0.0.1")


@pytest.mark.parametrize("given", ["prajjwal1/bert-tiny", "/data/models/my-model"])
def test_a_hub_id_or_a_folder_is_recorded_as_given(given):
    assert portable_name(given) == given
    assert parameter_from_record(given) == given
