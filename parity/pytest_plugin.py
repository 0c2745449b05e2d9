"""twinframe's pytest plugin (registered through the ``pytest11`` entry point): check your twin
pairs in your own test suite.

    def test_my_port(assert_twins):
        assert_twins("mypkg.torch_net:create", "mypkg.keras_net:create", input_shape=(2, 3, 48, 64))

``assert_twins`` takes :func:`parity.check_twins`' arguments and fails the test with the result's
table (first divergent layer, probable cause, coverage).  The framework workers are started once
per test session and shared by every test, so twenty pairs pay the start-up once.  The plugin
imports no framework in pytest's own process.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def twin_workers():
    """The reference's and each candidate's worker process, for the whole session."""
    from parity import api

    yield api.workers()
    api.close_workers()


@pytest.fixture
def check_twins(twin_workers):
    """:func:`parity.check_twins` on the session's workers: answers the :class:`parity.TwinResult`."""
    from parity import api

    def check(torch, keras, **options):
        return api.check_twins(torch, keras, runners=twin_workers, **options)

    return check


@pytest.fixture
def assert_twins(twin_workers):
    """:func:`parity.assert_twins` on the session's workers."""
    from parity import api

    def check(torch, keras, **options):
        return api.assert_twins(torch, keras, runners=twin_workers, **options)

    return check
