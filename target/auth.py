"""Bearer tokens: issue HS256 JWTs and turn a request's Authorization header into a principal."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from functools import cache, lru_cache

import bcrypt
import jwt

from target.problems import ProblemError, unauthorized

JWT_ALGORITHM = "HS256"
REQUIRED_CLAIMS = ("exp", "sub", "org")
BEARER_PREFIX = "bearer "
# Unknown e-mails still pay for one bcrypt check, so timing does not reveal who exists.
DUMMY_PASSWORD = b"no practitioner has this password"
BCRYPT_MAX_BYTES = 72
# Distinct valid tokens remembered per worker (a few hundred bytes each).
TOKEN_CACHE_SIZE = 10_000


@dataclass(frozen=True)
class Principal:
    """Who is calling: a practitioner acting for one organization."""

    practitioner_id: uuid.UUID
    organization_id: uuid.UUID
    role: str


def issue_token(
    practitioner_id: uuid.UUID, organization_id: uuid.UUID, role: str, secret: str, ttl_s: int
) -> str:
    """Sign a token carrying sub, org, role, iat and exp."""
    now = int(time.time())
    claims = {
        "sub": str(practitioner_id),
        "org": str(organization_id),
        "role": role,
        "iat": now,
        "exp": now + ttl_s,
    }
    return jwt.encode(claims, secret, algorithm=JWT_ALGORITHM)


def principal_from_header(header: str | None, secret: str) -> Principal:
    """Verify an ``Authorization: Bearer`` header; raise 401 on anything short of valid."""
    if not header:
        raise unauthorized("missing bearer token")
    if not header[: len(BEARER_PREFIX)].lower() == BEARER_PREFIX:
        raise unauthorized("Authorization header must use the Bearer scheme")
    principal, expires_at = verified_token(header[len(BEARER_PREFIX) :].strip(), secret)
    # A cached token is checked against the clock again on every use.
    if expires_at <= time.time():
        raise unauthorized("token expired")
    return principal


@lru_cache(maxsize=TOKEN_CACHE_SIZE)
def verified_token(token: str, secret: str) -> tuple[Principal, float]:
    """Verify a token's signature and claims once; return its principal and expiry.

    Practitioners send the same token for an hour, and HMAC verification plus claim parsing
    was about 6 % of a reservation's CPU. Only valid tokens are cached (an exception is not),
    so a refused token is checked again each time.
    """
    try:
        # Pinning the algorithm list is what refuses alg=none and key-confusion tokens.
        claims = jwt.decode(
            token, secret, algorithms=[JWT_ALGORITHM], options={"require": list(REQUIRED_CLAIMS)}
        )
    except jwt.ExpiredSignatureError as error:
        raise unauthorized("token expired") from error
    except jwt.InvalidTokenError as error:
        raise unauthorized(f"invalid token: {error}") from error
    principal = Principal(
        practitioner_id=_claim_uuid(claims, "sub"),
        organization_id=_claim_uuid(claims, "org"),
        role=str(claims.get("role", "")),
    )
    return principal, float(claims["exp"])


def _claim_uuid(claims: dict[str, object], name: str) -> uuid.UUID:
    value = claims.get(name)
    if not isinstance(value, str):
        raise unauthorized(f"claim {name!r} must be a UUID string")
    try:
        return uuid.UUID(value)
    except ValueError as error:
        raise unauthorized(f"claim {name!r} must be a UUID string") from error


@cache
def _dummy_hash() -> bytes:
    return bcrypt.hashpw(DUMMY_PASSWORD, bcrypt.gensalt())


def password_matches(password: str, password_hash: str | None) -> bool:
    """Check a password against a bcrypt hash (slow on purpose: call it in a thread)."""
    # bcrypt only reads 72 bytes and bcrypt 5 refuses longer input; cut it as older ones did.
    secret = password.encode()[:BCRYPT_MAX_BYTES]
    if password_hash is None:
        bcrypt.checkpw(secret, _dummy_hash())
        return False
    try:
        return bcrypt.checkpw(secret, password_hash.encode())
    except ValueError:
        # A malformed stored hash is a failed login, not a server error.
        return False


def invalid_credentials() -> ProblemError:
    """Build the 401 for a wrong e-mail or password (never saying which)."""
    return unauthorized("wrong e-mail or password")
