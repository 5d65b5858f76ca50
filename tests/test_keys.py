"""torrentgoat.keys: ed25519 seed keys, signatures, key files with 0600 permissions."""

from __future__ import annotations

import os
import random
import stat
from pathlib import Path

import pytest

from torrentgoat.cli.keygen import write_key_file
from torrentgoat.dht.items import SigningKey as DHTSigningKey
from torrentgoat.errors import ConfigError, SignatureError
from torrentgoat.keys import PUBLIC_KEY_SIZE, SIGNATURE_SIZE, SigningKey, verify_signature

# RFC 8032 section 7.1, TEST 1 (empty message).
RFC_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
RFC_SIGNATURE = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)


def test_rfc8032_vector() -> None:
    key = SigningKey(RFC_SEED)
    assert key.public_key == RFC_PUBLIC
    assert key.sign(b"") == RFC_SIGNATURE
    verify_signature(RFC_PUBLIC, b"", RFC_SIGNATURE)


def test_sign_and_verify_and_tamper() -> None:
    key = SigningKey.generate(random.Random(1).randbytes)
    message = b"torrentgoat"
    signature = key.sign(message)
    assert len(signature) == SIGNATURE_SIZE and len(key.public_key) == PUBLIC_KEY_SIZE
    verify_signature(key.public_key, message, signature)
    with pytest.raises(SignatureError):
        verify_signature(key.public_key, message + b"!", signature)
    for i in (0, 31, 63):
        flipped = bytearray(signature)
        flipped[i] ^= 1
        with pytest.raises(SignatureError):
            verify_signature(key.public_key, message, bytes(flipped))
    other = SigningKey.generate(random.Random(2).randbytes)
    with pytest.raises(SignatureError, match="does not verify"):
        verify_signature(other.public_key, message, signature)


@pytest.mark.parametrize(
    ("public", "signature"), [(b"\x00" * 31, b"\x00" * 64), (b"\x00" * 32, b"\x00" * 63), (b"", b"")]
)
def test_verify_refuses_bad_sizes(public: bytes, signature: bytes) -> None:
    with pytest.raises(SignatureError):
        verify_signature(public, b"m", signature)


def test_seed_size_is_checked() -> None:
    with pytest.raises(SignatureError, match="32 bytes"):
        SigningKey(b"\x00" * 64)  # a libtorrent expanded key is not a seed


def test_generate_is_deterministic_with_an_rng_and_random_without() -> None:
    assert SigningKey.generate(random.Random(5).randbytes) == SigningKey.generate(random.Random(5).randbytes)
    assert SigningKey.generate() != SigningKey.generate()


def test_compatible_with_the_dht_key() -> None:
    """Same seed semantics as torrentgoat.dht.items.SigningKey: same public key, signatures, expanded form."""
    seed = bytes(range(32))
    ours, dht = SigningKey(seed), DHTSigningKey(seed)
    assert ours.public_key == dht.public_key
    assert ours.sign(b"x") == dht.sign(b"x")  # ed25519 signatures are deterministic
    assert ours.expanded() == dht.expanded()


def test_repr_hides_the_seed() -> None:
    key = SigningKey(RFC_SEED)
    assert RFC_SEED.hex() not in repr(key)
    assert RFC_PUBLIC.hex() in repr(key)


def test_save_and_load(tmp_path: Path) -> None:
    key = SigningKey(RFC_SEED)
    old_umask = os.umask(0)  # whatever the umask, the file is 0600
    try:
        path = key.save(tmp_path / "publisher.key")
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes() == RFC_SEED
    assert SigningKey.load(path) == key
    assert [p.name for p in tmp_path.iterdir()] == ["publisher.key"]  # no temporary file left behind


def test_save_refuses_to_overwrite_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "k"
    SigningKey(RFC_SEED).save(path)
    other = SigningKey(b"\x01" * 32)
    with pytest.raises(ConfigError, match="exists"):
        other.save(path)
    assert SigningKey.load(path).seed == RFC_SEED
    other.save(path, overwrite=True)
    assert SigningKey.load(path) == other
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k"]


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o620])
def test_load_refuses_group_or_world_access(tmp_path: Path, mode: int) -> None:
    path = SigningKey(RFC_SEED).save(tmp_path / "k")
    path.chmod(mode)
    with pytest.raises(ConfigError, match=r"chmod 600"):
        SigningKey.load(path)


def test_load_accepts_hex_and_refuses_garbage(tmp_path: Path) -> None:
    path = tmp_path / "hex.key"
    path.write_text(RFC_SEED.hex() + "\n")
    path.chmod(0o600)
    assert SigningKey.load(path).public_key == RFC_PUBLIC
    for content in (b"short", b"z" * 64, b"ab" * 31, b"\x00" * 5000):
        path.write_bytes(content)
        with pytest.raises(ConfigError, match=r"seed|bytes"):
            SigningKey.load(path)


def test_load_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot open key file"):
        SigningKey.load(tmp_path / "missing")
    target = SigningKey(RFC_SEED).save(tmp_path / "real")
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(ConfigError, match="cannot open key file"):
        SigningKey.load(tmp_path / "link")  # O_NOFOLLOW: a key file is never a symlink
    (tmp_path / "dir").mkdir(mode=0o700)
    with pytest.raises(ConfigError):
        SigningKey.load(tmp_path / "dir")


def test_reads_files_written_by_keygen(tmp_path: Path) -> None:
    path = tmp_path / "keygen.key"
    write_key_file(path, DHTSigningKey(RFC_SEED))
    assert SigningKey.load(path).public_key == RFC_PUBLIC
