"""Credentials of the seeded practitioners: one known password, its bcrypt hash, their JWTs."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterable
from functools import cache

import bcrypt
import jwt

from seeding.dataset import PractitionerRow, stream

# Every seeded practitioner has this password, so tests can log in through the service.
KNOWN_PASSWORD = "loadtest-practitioner-password"
BCRYPT_ROUNDS = 12
BCRYPT_SALT_BYTES = 16
JWT_ALGORITHM = "HS256"
# bcrypt writes its salt in base64 with its own alphabet.
_STANDARD_BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_BCRYPT_BASE64 = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_TO_BCRYPT_ALPHABET = str.maketrans(_STANDARD_BASE64, _BCRYPT_BASE64)


# Deterministic per (seed, password): repeated seedings in one process hash only once.
@cache
def password_hash(seed: int, password: str = KNOWN_PASSWORD) -> str:
    """Hash ``password`` once with a salt drawn from ``seed``: real bcrypt, deterministic rows.

    Hashing per practitioner would cost ~0.25 s each (hours at scale 1000) for no realism
    the load test can observe; every practitioner shares this one hash.
    """
    salt_bytes = stream(seed, "password-salt").randbytes(BCRYPT_SALT_BYTES)
    encoded = base64.b64encode(salt_bytes).decode().rstrip("=").translate(_TO_BCRYPT_ALPHABET)
    salt = f"$2b${BCRYPT_ROUNDS:02d}${encoded}".encode()
    return bcrypt.hashpw(password.encode(), salt).decode()


def issue_tokens(
    practitioners: Iterable[PractitionerRow],
    *,
    jwt_secret: str,
    issued_at: dt.datetime,
    expires_at: dt.datetime,
) -> dict[str, str]:
    """Sign one HS256 JWT per practitioner; return them by practitioner id."""
    iat, exp = int(issued_at.timestamp()), int(expires_at.timestamp())
    return {
        str(row.id): jwt.encode(
            {
                "sub": str(row.id),
                "org": str(row.organization_id),
                "role": row.role,
                "iat": iat,
                "exp": exp,
            },
            jwt_secret,
            algorithm=JWT_ALGORITHM,
        )
        for row in practitioners
    }
