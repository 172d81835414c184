"""The strict YAML reader's two parsers: libyaml's for the files servesim ships, the pure one for
everything else and for every error.

``simulator.yaml_loading`` reads servesim's own hardware profiles and calibrations with
libyaml's parser where PyYAML has it (start-up reads about 75 of them) and, when that refuses a
document, reads it again with the pure-Python parser, whose error is the one reported. Files a
user writes are read by the pure parser alone: libyaml accepts some malformed text it refuses.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator import yaml_loading
from simulator.errors import ConfigError, ProfileError
from simulator.hardware import CATALOG_ROOT, is_shipped
from simulator.yaml_loading import read_yaml_mapping

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted(CATALOG_ROOT.rglob("*.yaml"))

needs_libyaml = pytest.mark.skipif(yaml_loading._FastUniqueKeyLoader is None,
                                   reason="PyYAML was built without libyaml: only the pure parser exists")


def _fast(text: str):
    return yaml_loading._load_with(yaml_loading._FastUniqueKeyLoader, text)


def _pure(text: str):
    return yaml_loading._load_with(yaml_loading._UniqueKeyLoader, text)


def test_the_shipped_files_are_the_catalogs() -> None:
    assert len(SHIPPED) > 50
    assert all(is_shipped(path) for path in SHIPPED)
    assert not is_shipped(REPO / "experiments" / "quickstart.yaml")


@needs_libyaml
@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(CATALOG_ROOT)))
def test_both_parsers_read_every_shipped_file_alike(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert _fast(text) == _pure(text)


_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=12), st.floats(allow_nan=False))
_documents = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=20)


@needs_libyaml
@settings(max_examples=300, deadline=None)
@given(_documents, st.booleans())
def test_both_parsers_read_dumped_documents_alike(document, flow: bool) -> None:
    # (Not compared with ``document``: PyYAML's dump does not always survive its own load; a
    # next-line character in a quoted key comes back as a space, from either parser.)
    text = yaml.safe_dump(document, default_flow_style=flow, allow_unicode=True)
    assert _fast(text) == _pure(text)


@needs_libyaml
def test_both_parsers_refuse_a_key_given_twice() -> None:
    for loader in (yaml_loading._FastUniqueKeyLoader, yaml_loading._UniqueKeyLoader):
        with pytest.raises(yaml.constructor.ConstructorError, match="'seed' is given twice"):
            yaml_loading._load_with(loader, "seed: 1\nname: x\nseed: 2\n")


@needs_libyaml
@pytest.mark.parametrize("text", ["seed: 1\t\n", "note: |#\n"])
def test_a_users_file_is_read_by_the_pure_parser(tmp_path: Path, text: str) -> None:
    """Text libyaml accepts and the pure parser refuses stays refused in a file a user wrote."""
    _fast(text)  # what would slip through
    path = tmp_path / "experiment.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="invalid YAML"):
        read_yaml_mapping(path, ConfigError)


def test_an_error_in_a_shipped_file_is_the_pure_parsers(tmp_path: Path, monkeypatch) -> None:
    """Read as shipped or not, a broken file gives the pure parser's message and line."""
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nseed: [1, 2\nmodel: y\n")
    messages = []
    for shipped in (True, False):
        with pytest.raises(ProfileError) as raised:
            read_yaml_mapping(path, ProfileError, shipped=shipped)
        messages.append(str(raised.value))
    assert messages[0] == messages[1]
    assert "line 3" in messages[0] and "invalid YAML" in messages[0]
