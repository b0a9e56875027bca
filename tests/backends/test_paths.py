"""container_dir refuses every name that could leave its base (STYLE §6.9, reference §11.5)."""
from __future__ import annotations

import pytest

from sc_actors.backends.paths import container_dir


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("host0-cont0", id="typical"),
        pytest.param("a", id="one-char"),
        pytest.param("App_1.v2-x", id="dot-underscore-dash"),
        pytest.param("x" * 128, id="128-chars"),
    ],
)
def test_good_names_resolve_to_a_child_of_the_base(tmp_path, name):
    assert container_dir(tmp_path, name) == tmp_path.resolve() / name


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("", id="empty"),
        pytest.param("a/b", id="slash"),
        pytest.param("/etc", id="absolute"),
        pytest.param("..", id="dotdot"),
        pytest.param("../x", id="dotdot-slash"),
        pytest.param("a..b", id="dotdot-inside"),
        pytest.param(".", id="dot"),
        pytest.param(".hidden", id="leading-dot"),
        pytest.param("-rf", id="leading-dash"),
        pytest.param("cont\u00e9", id="unicode"),
        pytest.param("\u0441ont", id="cyrillic-lookalike"),
        pytest.param("x" * 129, id="129-chars"),
        pytest.param("a\n", id="trailing-newline"),
        pytest.param("a b", id="space"),
        pytest.param("a\x00b", id="nul"),
    ],
)
def test_bad_names_are_refused(tmp_path, name):
    with pytest.raises(ValueError):
        container_dir(tmp_path, name)


def test_a_symlink_escaping_the_base_is_refused(tmp_path):
    base = tmp_path / "base"
    outside = tmp_path / "outside"
    base.mkdir()
    outside.mkdir()
    (base / "evil").symlink_to(outside)

    with pytest.raises(ValueError, match="outside"):
        container_dir(base, "evil")


def test_a_symlink_back_to_the_base_itself_is_refused(tmp_path):
    (tmp_path / "loop").symlink_to(tmp_path)

    with pytest.raises(ValueError):
        container_dir(tmp_path, "loop")


def test_a_symlink_to_the_root_is_refused(tmp_path):
    (tmp_path / "root").symlink_to("/")

    with pytest.raises(ValueError):
        container_dir(tmp_path, "root")


def test_the_base_need_not_exist_yet(tmp_path):
    assert container_dir(tmp_path / "not-yet", "c1") == tmp_path.resolve() / "not-yet" / "c1"
