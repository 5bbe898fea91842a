"""Settings: YAML + flags, and a bad config reported in one line naming the key."""

from __future__ import annotations

import subprocess

import pytest

from pacsd.config import load_settings
from pacsd.errors import ConfigError
from tests.conftest import REPO, VENV_BIN


def test_defaults_are_the_embedded_install():
    settings = load_settings()
    assert settings.server.port == 11112 and settings.server.ae_title == "PACSD"
    assert str(settings.storage.directory).startswith("pacs-data")
    assert str(settings.database.path) == "pacs-data/index.sqlite"
    assert settings.duplicates == "keep"


def test_flags_override_the_file(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("server:\n  port: 4242\n  ae_title: FROMFILE\nduplicates: reject\n")
    settings = load_settings(config, {"server.ae_title": "FROMFLAG"})
    assert (settings.server.port, settings.server.ae_title, settings.duplicates) == (4242, "FROMFLAG", "reject")


def test_example_config_is_valid_and_complete():
    settings = load_settings(REPO / "pacsd.example.yaml")
    text = (REPO / "pacsd.example.yaml").read_text()
    for section, model in settings:
        assert f"{section}:" in text, f"pacsd.example.yaml does not document {section}"
        if hasattr(model, "model_fields"):
            for key in type(model).model_fields:
                assert f"{key}:" in text, f"pacsd.example.yaml does not document {section}.{key}"


def test_max_pdu_is_finite_by_default_and_unlimited_only_on_request(tmp_path):
    """A finite maximum bounds the memory a sender can make us use per PDU (tests/test_receive_large.py)."""
    assert load_settings().server.max_pdu == 4 * 1024 * 1024
    assert load_settings(REPO / "pacsd.example.yaml").server.max_pdu == load_settings().server.max_pdu
    config = tmp_path / "c.yaml"
    config.write_text("server:\n  max_pdu: 0\n")
    assert load_settings(config).server.max_pdu == 0


def test_transfer_syntax_preference_takes_names_and_uids(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("server:\n  transfer_syntax_preference: [Explicit VR Little Endian, JPEG2000Lossless, 1.2.3]\n")
    assert load_settings(config).server.transfer_syntax_preference == [
        "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.4.90", "1.2.3"]


@pytest.mark.parametrize("yaml_text,key", [
    ("server:\n  port: 70000\n", "server.port"),
    ("server:\n  ae_title: WAY_TOO_LONG_AE_TITLE\n", "server.ae_title"),
    ("server:\n  colour: blue\n", "server.colour"),
    ("server:\n  max_pdu: -1\n", "server.max_pdu"),
    ("storage:\n  naming: '{NotAKeyword}/{SOPInstanceUID}'\n", "storage.naming"),
    ("storage:\n  naming: '../{SOPInstanceUID}'\n", "storage.naming"),
    ("accepted_sop_classes: [CT, NOSUCHTHING]\n", "accepted_sop_classes"),
    ("duplicates: sometimes\n", "duplicates"),
    ("server:\n  transfer_syntax_preference: [Explicit first]\n", "server.transfer_syntax_preference"),
    ("known_aes:\n  - {ae_title: X, host: h}\n", "known_aes.0.port"),
])
def test_bad_setting_names_the_key(tmp_path, yaml_text, key):
    config = tmp_path / "bad.yaml"
    config.write_text(yaml_text)
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    message = str(caught.value)
    assert f": {key}:" in message and "\n" not in message


def test_bad_config_stops_serve_with_one_line(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("server:\n  port: -1\n")
    result = subprocess.run([str(VENV_BIN / "pacsd"), "serve", "--config", str(config)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "server.port" in result.stderr
    assert "Traceback" not in result.stderr


def test_not_yaml_is_reported(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("server: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(config)
