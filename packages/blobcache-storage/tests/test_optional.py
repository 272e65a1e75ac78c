from __future__ import annotations

import pytest

from cacheness.storage import import_optional, is_loaded
from cacheness.storage._optional import install_hint
from cacheness.storage.errors import MissingDependencyError


def test_missing_module_names_the_extra_and_keeps_the_cause():
    with pytest.raises(MissingDependencyError) as info:
        import_optional("surely_not_installed_pkg", extra="s3", purpose="the s3 blob backend")
    message = str(info.value)
    assert 'pip install "blobcache-storage[s3]"' in message
    assert "the s3 blob backend" in message
    assert isinstance(info.value.__cause__, ModuleNotFoundError)


def test_install_hint_for_another_distribution():
    assert install_hint("yaml", "cacheness") == 'pip install "cacheness[yaml]"'


def test_present_module_is_returned():
    module = import_optional("json", extra="core")
    assert module.loads("[1, 2]") == [1, 2]
    assert is_loaded("json")
    assert not is_loaded("surely_not_installed_pkg")
