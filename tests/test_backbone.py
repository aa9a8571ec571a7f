"""How a run names its backbone: a name that means the same on any machine, and back.

No model is built here: a backbone folder needs only its files (a digest of them), and the
packaged MiniLM only its pip package's name and version.
"""

from importlib import metadata

import pytest

from utils.backbone import (PACKAGE, folder_digest, packaged_backbone,
                            parameter_from_record, portable_name)
from utils.errors import CourseError


@pytest.fixture
def model_folder(tmp_path):
    """A small stand-in for a model folder in Hugging Face format: a config and two files."""
    folder = tmp_path / "my-model"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_bytes((packaged_backbone() / "config.json").read_bytes())
    (folder / "vocab.txt").write_text("[PAD]\n[UNK]\nfilm\n")
    (folder / "sub" / "weights.bin").write_bytes(bytes(range(256)) * 10)
    return folder


def test_the_packaged_minilm_is_named_by_its_package_and_version():
    name = portable_name(str(packaged_backbone()))
    assert name == f"{PACKAGE}=={metadata.version(PACKAGE)}"
    assert "/" not in name  # no path of this machine


def test_a_folder_is_named_by_its_name_and_a_digest_of_its_files(model_folder):
    name = portable_name(str(model_folder))
    assert name == f"my-model@{folder_digest(model_folder)}"
    assert str(model_folder.parent) not in name
    assert folder_digest(model_folder).startswith("sha256:") and len(folder_digest(model_folder)) == 23


def test_the_digest_is_the_same_for_the_same_files_anywhere(model_folder, tmp_path):
    import shutil

    copy = shutil.copytree(model_folder, tmp_path / "elsewhere" / "my-model")
    assert folder_digest(copy) == folder_digest(model_folder)
    assert portable_name(str(copy)) == portable_name(str(model_folder))


@pytest.mark.parametrize("change", ["edit", "rename", "add"])
def test_the_digest_changes_with_any_file(model_folder, change):
    before = folder_digest(model_folder)
    if change == "edit":
        (model_folder / "vocab.txt").write_text("[PAD]\n[UNK]\nmovie\n")
    elif change == "rename":
        (model_folder / "vocab.txt").rename(model_folder / "vocabulary.txt")
    else:
        (model_folder / "sub" / "more.bin").write_bytes(b"\0")
    assert folder_digest(model_folder) != before


def test_a_hub_id_that_is_not_cached_is_named_as_given():
    assert portable_name("someone/some-model-that-is-not-cached") == "someone/some-model-that-is-not-cached"


# -- from the record back to a parameter ------------------------------------------------------
def test_the_packaged_name_gives_back_the_default():
    assert parameter_from_record(portable_name(str(packaged_backbone()))) is None


def test_another_version_of_the_package_cannot_train_the_run_again():
    with pytest.raises(CourseError, match=rf"trained on {PACKAGE}==0\.0\.1, but this environment has "
                                          rf"{PACKAGE} {metadata.version(PACKAGE)}\. Install {PACKAGE}==0\.0\.1"):
        parameter_from_record(f"{PACKAGE}==0.0.1")


def test_a_folder_gives_back_its_recorded_path(model_folder):
    recorded = portable_name(str(model_folder))
    assert parameter_from_record(recorded, str(model_folder)) == str(model_folder)


def test_a_changed_folder_cannot_train_the_run_again(model_folder):
    recorded = portable_name(str(model_folder))
    (model_folder / "vocab.txt").write_text("changed\n")
    with pytest.raises(CourseError, match=r"has changed since the run \(sha256:[0-9a-f]{16} then, "
                                          r"sha256:[0-9a-f]{16} now\)"):
        parameter_from_record(recorded, str(model_folder))


def test_a_folder_that_is_gone_or_not_recorded_is_named(model_folder, tmp_path):
    recorded = portable_name(str(model_folder))
    with pytest.raises(CourseError, match=r"local backbone folder 'my-model', and its folder \(not recorded\)"):
        parameter_from_record(recorded, None)
    with pytest.raises(CourseError, match="is not on this machine"):
        parameter_from_record(recorded, str(tmp_path / "gone"))


def test_a_hub_id_with_a_revision_gives_back_the_id():
    assert parameter_from_record("prajjwal1/bert-tiny@0123abcd") == "prajjwal1/bert-tiny"
    assert parameter_from_record("prajjwal1/bert-tiny") == "prajjwal1/bert-tiny"

