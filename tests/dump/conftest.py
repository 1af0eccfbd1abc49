"""What the dump tests share: the hand-built image (``images.build_image``) and its
saved ELF dump, made once per module that asks for them."""

import pytest

from s390emu import dump

from .images import build_image


@pytest.fixture(scope="module")
def image():
    return build_image()


@pytest.fixture(scope="module")
def vmcore(image, tmp_path_factory):
    path = tmp_path_factory.mktemp("vmcore") / "vmcore"
    dump.save(path, image.machine)
    return path
