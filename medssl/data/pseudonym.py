"""Salted pseudonyms for patient and study ids: what medssl writes instead of the ids.

Radiology files name their patient (PatientID, PatientName, ...). medssl never writes
those values: a patient or study is known by ``pseudonym(salt, kind, value)``, the first
16 hex digits of HMAC-SHA256 keyed with a secret *salt* that stays with the user. Without
the salt nobody can test a guessed id against a pseudonym; with it, the user can map a
pseudonym back by hashing their own id list.

Where the salt comes from, first match wins:

1. ``MEDSSL_ID_SALT`` (environment): the salt itself, as text;
2. ``salt_file`` (a dataset key) or ``MEDSSL_ID_SALT_FILE`` (environment): a file whose
   bytes are the salt;
3. ``~/.config/medssl/id_salt`` (``$XDG_CONFIG_HOME`` respected): created on first use
   with 32 random bytes, readable by its owner only.

The same salt gives the same pseudonyms, so splits files (``medssl data split --by
patient``) keep matching; a different salt is detected by :func:`salt_check`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import Optional

from medssl.errors import ConfigError
from medssl.fileio import PathLike

SALT_ENV = "MEDSSL_ID_SALT"
SALT_FILE_ENV = "MEDSSL_ID_SALT_FILE"
DIGITS = 16  # 64 bits: collisions stay negligible below ~10^8 patients
MIN_SALT_BYTES = 16


def default_salt_file() -> Path:
    """``$XDG_CONFIG_HOME/medssl/id_salt`` (``~/.config/medssl/id_salt`` by default)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "medssl" / "id_salt"


def _read_salt_file(path: Path, create: bool) -> bytes:
    if not path.is_file():
        if not create:
            raise ConfigError(f"id salt file {path} does not exist; create it (e.g. `head -c 32 /dev/urandom > {path}`) "
                              f"or unset {SALT_FILE_ENV} / salt_file")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never replace an existing salt
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_bytes(32))
    salt = path.read_bytes()
    if len(salt) < MIN_SALT_BYTES:
        raise ConfigError(f"id salt file {path} holds {len(salt)} bytes; a salt needs at least {MIN_SALT_BYTES} "
                          f"(e.g. `head -c 32 /dev/urandom > {path}`)")
    return salt


def load_salt(salt_file: Optional[PathLike] = None) -> bytes:
    """The salt (see the module docstring for the order); ConfigError for a short or missing one."""
    text = os.environ.get(SALT_ENV)
    if text:
        if len(text.encode("utf-8")) < MIN_SALT_BYTES:
            raise ConfigError(f"{SALT_ENV} must be at least {MIN_SALT_BYTES} characters long (a secret, kept with you)")
        return text.encode("utf-8")
    if salt_file is not None:
        return _read_salt_file(Path(salt_file).expanduser(), create=False)
    env_file = os.environ.get(SALT_FILE_ENV)
    if env_file:
        return _read_salt_file(Path(env_file).expanduser(), create=False)
    return _read_salt_file(default_salt_file(), create=True)


def pseudonym(salt: bytes, kind: str, value: str) -> str:
    """``"<kind initial>-<16 hex>"``: HMAC-SHA256 of ``kind:value`` keyed with ``salt``."""
    digest = hmac.new(salt, f"{kind}:{value}".encode("utf-8"), hashlib.sha256).hexdigest()[:DIGITS]
    return f"{kind[:1]}-{digest}"


def salt_check(salt: bytes) -> str:
    """A pseudonym of a fixed value: stored in splits files to tell a changed salt."""
    return pseudonym(salt, "check", "medssl")
