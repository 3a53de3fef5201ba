"""utils/torch_files: what the weights reader says when torch refuses a file, and torchvision's cached weights."""
import collections
import fractions
import hashlib
import urllib.error

import pytest
import torch

from rgs_detectron.errors import ConfigError, WeightsError
from rgs_detectron.utils import torch_files
from rgs_detectron.utils.torch_files import RefusedByTorch, load_weights_only, weights_source

from common import as_torchvision_weights


def test_a_refused_file_is_named_with_torchs_own_reason_and_not_called_corrupt(tmp_path):
    path = tmp_path / "objects.pth"
    torch.save({"w": torch.zeros(1), "ratio": fractions.Fraction(1, 3)}, path)
    with pytest.raises(WeightsError) as refused:
        load_weights_only(str(path))
    message = str(refused.value)
    assert str(path) in message and "fractions.Fraction" in message  # torch's reason, repeated
    assert "corrupt" not in message and "nothing in it ran" in message and "\n" not in message
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(path.read_bytes()[:200])
    with pytest.raises(WeightsError, match=r"truncated or corrupt\? \(torch: RuntimeError: .*zip archive"):
        load_weights_only(str(truncated))


def test_a_file_a_newer_torch_reads_says_which_and_is_not_called_corrupt(tmp_path, monkeypatch):
    """What torch 2.3 says of a Counter (the scheduler state of older train_classifier runs): here a Fraction
    stands in for it, as if a torch newer than this one allowed it."""
    path = tmp_path / "last.pth"
    torch.save({"w": torch.zeros(1), "milestones": fractions.Fraction(1, 3)}, path)
    monkeypatch.setitem(torch_files._ALLOWED_FROM, "fractions.Fraction", "99.0")
    with pytest.raises(RefusedByTorch) as refused:
        load_weights_only(str(path))
    message = str(refused.value)
    assert message.startswith(f"torch {torch.__version__} cannot read {str(path)!r}: its weights-only loader refuses "
                              "fractions.Fraction (torch: ")
    assert message.endswith("The file is intact and nothing in it ran; torch >= 99.0 reads it")
    assert "corrupt" not in message and "--overwrite" not in message


def test_a_counter_is_read_by_the_torch_that_allows_it_and_refused_naming_that_torch_by_older_ones(tmp_path):
    """The matrix runs this on both sides of torch 2.4."""
    path = tmp_path / "old_last.pth"
    torch.save({"scheduler": {"milestones": collections.Counter([2, 3])}}, path)
    if torch.__version__ >= "2.4":
        assert load_weights_only(str(path))["scheduler"]["milestones"] == {2: 1, 3: 1}
    else:
        with pytest.raises(RefusedByTorch, match=r"refuses collections.Counter .* torch >= 2.4 reads it$"):
            load_weights_only(str(path))


# --------------------------------------------------------------------------- torchvision's cached weights


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """An empty torch cache and no network: a download attempt fails as offline."""

    def offline(url, dst, *args, **kwargs):
        raise urllib.error.URLError("no network in the tests")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    return tmp_path / "torch_home"


def test_a_cached_file_that_matches_its_names_hash_prefix_is_used(torch_home, monkeypatch):
    data = b"stand-in weights"
    name = as_torchvision_weights(monkeypatch, data)
    cached = torch_home / "hub" / "checkpoints" / name
    cached.parent.mkdir(parents=True)
    cached.write_bytes(data)
    source = "torchvision:ResNet50_Weights.IMAGENET1K_V1"
    assert weights_source(source) == (str(cached), f"{source} ({cached})")
    assert weights_source(str(cached)) == (str(cached), str(cached))  # a path is itself


def test_a_cached_file_whose_hash_differs_from_its_name_is_refused_naming_both(torch_home):
    """The real torchvision entry: a file placed under its cached name must be that file."""
    cached = torch_home / "hub" / "checkpoints" / "resnet50-0676ba61.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"something else")
    with pytest.raises(WeightsError) as refused:
        weights_source("torchvision:ResNet50_Weights.IMAGENET1K_V1")
    message = str(refused.value)
    digest = hashlib.sha256(b"something else").hexdigest()[:8]
    assert f"{str(cached)!r} is not torchvision's ResNet50_Weights.IMAGENET1K_V1" in message
    assert f"starts 0676ba61, this file's starts {digest}" in message and "https://download.pytorch.org" in message


def test_every_message_about_a_cached_file_names_it(torch_home):
    cached = torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    with pytest.raises(WeightsError, match=f"place that file at {str(cached)!r}"):
        weights_source("torchvision:ResNet18_Weights.IMAGENET1K_V1")  # offline, not cached
    cached.write_bytes(b"")
    with pytest.raises(WeightsError, match=f"{str(cached)!r} .torch's cached torchvision:ResNet18.* is an empty file"):
        weights_source("torchvision:ResNet18_Weights.IMAGENET1K_V1")


@pytest.mark.parametrize("name, says", [
    ("resnet50.IMAGENET1K_V1", "write torchvision:ResNet50_Weights.IMAGENET1K_V1"),
    ("resnet50", "give torchvision:ResNet50_Weights.VALUE, VALUE one of IMAGENET1K_V1, IMAGENET1K_V2, DEFAULT"),
    ("ResNet50_Weights.V9", "give torchvision:ResNet50_Weights.VALUE, VALUE one of IMAGENET1K_V1, IMAGENET1K_V2"),
    ("NoSuch.V1", "give ENUM.VALUE, e.g. torchvision:ResNet50_Weights.IMAGENET1K_V1"),
])
def test_a_misspelled_torchvision_source_gets_one_line_with_the_right_spelling(name, says):
    with pytest.raises(ConfigError) as refused:
        weights_source(f"torchvision:{name}")
    assert says in str(refused.value) and "\n" not in str(refused.value)


def test_a_torch_home_that_is_not_a_usable_folder_gets_advice_that_works(tmp_path, monkeypatch):
    home = tmp_path / "not_a_folder"
    home.write_text("a file")
    monkeypatch.setenv("TORCH_HOME", str(home))
    with pytest.raises(WeightsError) as refused:
        weights_source("torchvision:ResNet18_Weights.IMAGENET1K_V1")
    message = str(refused.value)
    assert f"torch's cache {str(home / 'hub' / 'checkpoints')!r}" in message
    assert "is not a folder this user can write" in message and "set TORCH_HOME to one" in message
    assert "place" not in message  # there is nowhere to place it
