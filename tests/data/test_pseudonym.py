"""Salted pseudonyms: keyed (a different salt, a different pseudonym), stable, and the salt's
sources in their documented order."""

from __future__ import annotations

import hashlib
import hmac
import os
import stat

import pytest

from medssl.data.pseudonym import SALT_ENV, SALT_FILE_ENV, load_salt, pseudonym, salt_check
from medssl.errors import ConfigError


def test_pseudonym_is_hmac_sha256_of_kind_and_value():
    salt = b"0123456789abcdef-salt"
    expected = hmac.new(salt, b"patient:MRN123", hashlib.sha256).hexdigest()[:16]
    assert pseudonym(salt, "patient", "MRN123") == "p-" + expected
    assert pseudonym(salt, "study", "MRN123").startswith("s-") and pseudonym(salt, "study", "MRN123")[2:] != expected
    assert pseudonym(b"another-salt-of-16+", "patient", "MRN123") != pseudonym(salt, "patient", "MRN123")
    assert "MRN123" not in pseudonym(salt, "patient", "MRN123")


def test_salt_order_env_then_file_then_default(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.delenv(SALT_ENV, raising=False)
    monkeypatch.delenv(SALT_FILE_ENV, raising=False)
    default = load_salt()  # created on first use, owner-only
    path = tmp_path / "cfg" / "medssl" / "id_salt"
    assert path.read_bytes() == default and len(default) == 32
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_salt() == default  # never replaced
    key = tmp_path / "key"
    key.write_bytes(b"k" * 20)
    monkeypatch.setenv(SALT_FILE_ENV, str(key))
    assert load_salt() == b"k" * 20
    assert load_salt(salt_file=key) == b"k" * 20
    monkeypatch.setenv(SALT_ENV, "e" * 16)
    assert load_salt(salt_file=key) == b"e" * 16
    assert salt_check(b"e" * 16) != salt_check(default)


def test_short_or_missing_salts_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv(SALT_ENV, "short")
    with pytest.raises(ConfigError, match="at least 16 characters"):
        load_salt()
    monkeypatch.delenv(SALT_ENV)
    (tmp_path / "tiny").write_bytes(b"abc")
    with pytest.raises(ConfigError, match="holds 3 bytes"):
        load_salt(salt_file=tmp_path / "tiny")
    with pytest.raises(ConfigError, match="does not exist"):
        load_salt(salt_file=tmp_path / "nope")
