"""Where no Docker engine can be had, the docker-marked tests skip and say why (runs in the
default suite: nothing here needs Docker)."""

from __future__ import annotations

from unittest import mock

import pytest

from tests.deploy import dockerlab


def _skip_reason() -> str:
    with pytest.raises(pytest.skip.Exception) as skipped:
        next(dockerlab.docker_engine())
    return str(skipped.value.msg)


def test_skips_without_a_client() -> None:
    with mock.patch.object(dockerlab, "_client", return_value=None):
        assert "no docker client" in _skip_reason()


def test_skips_without_an_engine_or_root() -> None:
    with (
        mock.patch.object(dockerlab, "_client", return_value="/usr/bin/docker"),
        mock.patch.object(dockerlab, "_engine_answers", return_value=False),
        mock.patch.object(dockerlab.shutil, "which", return_value="/usr/sbin/dockerd"),
        mock.patch.object(dockerlab.os, "geteuid", return_value=1000),
    ):
        assert "starting dockerd needs root" in _skip_reason()


def test_skips_without_dockerd() -> None:
    with (
        mock.patch.object(dockerlab, "_client", return_value="/usr/bin/docker"),
        mock.patch.object(dockerlab, "_engine_answers", return_value=False),
        mock.patch.object(dockerlab.shutil, "which", return_value=None),
        mock.patch.object(dockerlab.os.path, "exists", return_value=False),
    ):
        assert "no dockerd binary" in _skip_reason()


def test_skips_when_dockerd_dies() -> None:
    """A dockerd that exits at once (as on a host whose kernel refuses it) is a skip with its log."""
    with (
        mock.patch.object(dockerlab, "_client", return_value="/usr/bin/docker"),
        mock.patch.object(dockerlab, "_engine_answers", return_value=False),
        mock.patch.object(dockerlab.shutil, "which", return_value="/bin/false"),
        mock.patch.object(dockerlab.os, "geteuid", return_value=0),
        mock.patch.object(dockerlab._NetworkState, "save", return_value=mock.Mock()),
    ):
        assert "dockerd could not start" in _skip_reason()
