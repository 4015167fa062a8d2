"""Fixtures the attack suites share with the integration tests."""

from tests.integration.test_server_plugin import point_at  # noqa: F401 - a fixture
