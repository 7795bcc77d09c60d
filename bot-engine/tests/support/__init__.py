"""Test support code shared by several test modules (local servers, the pipeline harness)."""

import pytest

# Imported by test modules before pytest loads it as a plugin: register it so that its
# asserts are rewritten (and pytest does not refuse a plugin it can no longer rewrite).
pytest.register_assert_rewrite("tests.support.pipeline", "tests.support.live")
