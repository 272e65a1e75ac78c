"""Signed entries: an HMAC-SHA256 over what decides what a read returns.

Whoever can write the index (or the blobs) of a store but does not hold the signing key
cannot make a read return, or decode, bytes the key holder did not write: every entry
carries ``signature = "v1:<key id>:<hex HMAC>"`` over a canonical msgspec encoding (JSON,
dict keys sorted) of
its key, handler, format, format_info, codec, sizes, content hash, inline payload,
blob reference and (unless opted out) user metadata; the store checks it before any
handler sees the bytes.

The key lives outside the store. :func:`resolve_signing_key` looks, in order, at an
explicit key, the ``CACHENESS_SIGNING_KEY`` variable (hex or base64), a key file (refused
when group or others can read it) and, only where asked (an embedded store), a per-user
key file created on first use under the user's config directory.

Example:
    >>> from cacheness.storage import Entry, EntrySigner, SigningKey
    >>> key = SigningKey(b"k" * 32)
    >>> signer = EntrySigner(key)
    >>> entry = Entry.new("model", handler="raw", format="bytes", size=3, inline=b"abc")
    >>> signed = entry.replace(signature=signer.sign(entry))
    >>> signed.signature.startswith("v1:" + key.key_id + ":"), signer.check(signed)
    (True, 'valid')
    >>> signer.check(signed.replace(handler="objects"))
    'invalid'
    >>> key  # the secret is never printed
    SigningKey(key_id='...')
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import os
import stat
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import msgspec

from cacheness.storage.errors import ConfigError, InvalidEntryError

if TYPE_CHECKING:
    from cacheness.storage._entry import Entry
    from cacheness.storage._metadata.base import PayloadInfo

ENV_VAR: Final = "CACHENESS_SIGNING_KEY"
"""The environment variable holding the signing key (hex or base64)."""

KEY_FILE_ENV_VAR: Final = "CACHENESS_SIGNING_KEY_FILE"
"""The environment variable naming a key file."""

MIN_KEY_BYTES: Final = 16
"""Shortest secret accepted (32 random bytes are generated)."""

SIGNATURE_VERSION: Final = "v1"

REQUIRED_FIELDS: Final = (
    "key", "handler", "format", "format_info", "codec", "size", "raw_size",
    "content_hash", "inline", "blob_ref",
)  # fmt: skip
"""Fields always signed: they decide which bytes a read returns and how they decode."""

OPTIONAL_FIELDS: Final = ("metadata",)
"""Fields signed unless opted out (``"metadata.<name>"`` signs one top-level key only)."""

DEFAULT_SIGNED_FIELDS: Final = REQUIRED_FIELDS + OPTIONAL_FIELDS
"""What :class:`EntrySigner` signs by default."""

UNSIGNED_POLICIES: Final = ("reject", "accept_data_only", "accept")
"""What a read does with an entry that has no signature (written before signing was on)."""

Verdict = Literal["valid", "unsigned", "invalid"]
UnsignedPolicy = Literal["reject", "accept_data_only", "accept"]

_KEY_ID_PREFIX: Final = b"cacheness-key-id"
_HELP: Final = (
    f'set {ENV_VAR} to 32 random bytes in hex (python -c "import secrets; '
    f'print(secrets.token_hex(32))"), point {KEY_FILE_ENV_VAR} (or signing_key_file=) at '
    "a file holding it readable only by you (chmod 600), or pass the key from your "
    "secret manager explicitly (signing_key=...)"
)


class SigningKey:
    """A signing secret that never prints: ``repr`` and ``str`` show only its key id.

    Args:
        secret: at least :data:`MIN_KEY_BYTES` bytes (32 random bytes recommended).

    Attributes:
        key_id: 8 hex characters derived from the secret (``sha256("cacheness-key-id" +
            secret)``); it names the key in signatures, so keys can rotate.

    Raises:
        ConfigError: the secret is not bytes or is too short.

    Example:
        >>> key = SigningKey.parse("00" * 32)
        >>> str(key) == repr(key) == f"SigningKey(key_id='{key.key_id}')"
        True
        >>> len(key.get_secret_value())
        32
    """

    __slots__ = ("_secret", "key_id")

    def __init__(self, secret: bytes) -> None:
        if not isinstance(secret, bytes | bytearray):
            raise ConfigError(
                "a signing key is bytes (or SigningKey.parse(hex or base64 text)), got "
                f"{type(secret).__name__}"
            )
        if len(secret) < MIN_KEY_BYTES:
            raise ConfigError(
                f"a signing key must be at least {MIN_KEY_BYTES} bytes, got {len(secret)}; " + _HELP
            )
        self._secret = bytes(secret)
        self.key_id = hashlib.sha256(_KEY_ID_PREFIX + self._secret).hexdigest()[:8]

    @classmethod
    def generate(cls) -> SigningKey:
        """Return a new random 32-byte key.

        Example:
            >>> SigningKey.generate() != SigningKey.generate()
            True
        """
        return cls(os.urandom(32))

    @classmethod
    def parse(cls, text: str) -> SigningKey:
        """Return the key written as hex or base64 text (what the env var and files hold).

        Raises:
            ConfigError: the text is neither, or too short; the message never echoes it.

        Example:
            >>> SigningKey.parse("ab" * 16).key_id == SigningKey(bytes.fromhex("ab" * 16)).key_id
            True
        """
        if not isinstance(text, str):
            raise ConfigError(f"a signing key text is a str, got {type(text).__name__}")
        value = text.strip()
        try:
            return cls(bytes.fromhex(value))
        except ValueError:
            pass
        try:
            return cls(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            pass
        try:
            return cls(base64.urlsafe_b64decode(value.encode("ascii")))
        except (binascii.Error, ValueError):
            raise ConfigError(
                f"the signing key is neither hex nor base64 text ({len(value)} characters); "
                + _HELP
            ) from None

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> SigningKey:
        """Read a key file (hex or base64 text, or raw bytes).

        Raises:
            ConfigError: the file is missing, or group or others may read or write it
                (``chmod 600`` it), or it holds no valid key.

        Example:
            >>> import os, tempfile
            >>> path = os.path.join(tempfile.mkdtemp(), "k")
            >>> fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
            >>> os.write(fd, b"ab" * 32) and os.close(fd)
            >>> SigningKey.from_file(path).key_id == SigningKey.parse("ab" * 32).key_id
            True
        """
        file = Path(path).expanduser()
        try:
            with open(file, "rb") as handle:
                mode = os.fstat(handle.fileno()).st_mode
                data = handle.read()
        except FileNotFoundError:
            raise ConfigError(f"the signing key file {file} does not exist; " + _HELP) from None
        except OSError as exc:
            raise ConfigError(f"cannot read the signing key file {file}: {exc}") from exc
        if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(
                f"the signing key file {file} is accessible by group or others (mode "
                f"{stat.S_IMODE(mode):o}); anyone who can read it can forge entries. Run "
                f"`chmod 600 {file}` (and rotate the key if others may have read it)"
            )
        try:
            return cls.parse(data.decode("ascii"))
        except (UnicodeDecodeError, ConfigError):
            return cls(data)

    def get_secret_value(self) -> bytes:
        """Return the secret bytes (as ``pydantic.SecretStr.get_secret_value``)."""
        return self._secret

    def __repr__(self) -> str:
        return f"SigningKey(key_id={self.key_id!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SigningKey):
            return NotImplemented
        return hmac.compare_digest(self._secret, other._secret)

    def __hash__(self) -> int:
        return hash(self.key_id)

    def __reduce__(self) -> Any:
        raise TypeError("a SigningKey is not pickled (it would write the secret out)")


KeyLike = SigningKey | bytes | str


def as_key(value: KeyLike) -> SigningKey:
    """``value`` as a :class:`SigningKey`: bytes are the secret, a str is hex or base64."""
    if isinstance(value, SigningKey):
        return value
    if isinstance(value, str):
        return SigningKey.parse(value)
    return SigningKey(value)


_PROCESS_KEY: dict[int, SigningKey] = {}


def process_key() -> SigningKey:
    """A key of this process only (a new one after a fork): what stores whose index and
    blobs live in this process's memory sign with; every such store shares it."""
    pid = os.getpid()
    key = _PROCESS_KEY.get(pid)
    if key is None:
        key = _PROCESS_KEY.setdefault(pid, SigningKey.generate())
    return key


def user_key_path(environ: Mapping[str, str] | None = None) -> Path:
    """The per-user key file: ``$XDG_CONFIG_HOME/cacheness/signing.key``.

    ``~/.config/cacheness/signing.key`` when ``XDG_CONFIG_HOME`` is unset (on Windows
    ``%APPDATA%\\cacheness\\signing.key``). Never under a cache directory.

    Example:
        >>> user_key_path({"XDG_CONFIG_HOME": "/cfg"}).as_posix()  # doctest: +SKIP
        '/cfg/cacheness/signing.key'
    """
    env = os.environ if environ is None else environ
    base = env.get("XDG_CONFIG_HOME", "").strip()
    if not base:
        if sys.platform == "win32" and env.get("APPDATA"):
            base = env["APPDATA"]
        else:
            base = os.path.join(os.path.expanduser("~"), ".config")
    return Path(base).expanduser() / "cacheness" / "signing.key"


def load_or_create_user_key(path: str | os.PathLike[str] | None = None) -> SigningKey:
    """Return the per-user key, creating it (0600, atomically) on first use.

    Race-safe between processes: the key is written to a private sibling file and
    linked into place (``O_EXCL`` semantics), so concurrent first uses agree on one key
    and nobody reads a half-written file.

    Example:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "cacheness", "signing.key")
        >>> load_or_create_user_key(path) == load_or_create_user_key(path)
        True
    """
    file = Path(path) if path is not None else user_key_path()
    if not file.exists():
        file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        temp = file.with_name(f".{file.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(os.urandom(32).hex().encode("ascii") + b"\n")
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(temp, file)  # fails if another process created it first
            except FileExistsError:
                pass
            except OSError:  # no hard links here: create-only open instead
                _create_exclusive(file, temp)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(temp)
    return SigningKey.from_file(file)


def _create_exclusive(file: Path, temp: Path) -> None:
    try:
        fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "wb") as handle:
        handle.write(temp.read_bytes())


def resolve_signing_key(
    explicit: KeyLike | None = None,
    *,
    key_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    user_key: bool = False,
) -> SigningKey | None:
    """Find the signing key: explicit > ``CACHENESS_SIGNING_KEY`` > key file > user key.

    Args:
        explicit: a key given in code (bytes, hex/base64 text or a :class:`SigningKey`).
        key_file: a key file (else ``CACHENESS_SIGNING_KEY_FILE``, if set).
        environ: the environment to read (default ``os.environ``).
        user_key: fall back to the per-user key file, created on first use (what an
            embedded store does; a team cache must be given its key).

    Returns:
        The key, or None when none is configured and ``user_key`` is False.

    Raises:
        ConfigError: a configured key is invalid or its file is unsafe.

    Example:
        >>> resolve_signing_key(environ={ENV_VAR: "cd" * 32}).key_id == SigningKey.parse(
        ...     "cd" * 32).key_id
        True
        >>> resolve_signing_key(environ={}) is None
        True
    """
    if explicit is not None:
        return as_key(explicit)
    env = os.environ if environ is None else environ
    text = env.get(ENV_VAR, "").strip()
    if text:
        try:
            return SigningKey.parse(text)
        except ConfigError as exc:
            raise ConfigError(f"{ENV_VAR}: {exc}") from None
    file = key_file or env.get(KEY_FILE_ENV_VAR, "").strip() or None
    if file is not None:
        return SigningKey.from_file(file)
    if user_key:
        return load_or_create_user_key(user_key_path(env))
    return None


def missing_key_error(where: str) -> ConfigError:
    """The error of a shared store with signing on and no key: how to provide one."""
    return ConfigError(
        f"{where} is shared between machines and signing is on, but no signing key is "
        "configured (a key generated here would differ on the next machine). Give every "
        f"machine the same key: {_HELP}. To run without signing, pass signing=False "
        "(entries are then only as trustworthy as everyone who can write the index and blobs)"
    )


_encoder = msgspec.json.Encoder(order="deterministic")  # JSON: ints of any size, as stored
_WHOLE: tuple[tuple[str, ...], ...] = ((),)  # the metadata paths meaning "all of it"


class EntrySigner:
    """Signs entries and checks their signatures (HMAC-SHA256).

    Args:
        keys: the key, or ``[current, *older]`` for rotation: new signatures use the
            first; any verifies. Bytes, hex/base64 text or :class:`SigningKey`.
        signed_fields: names from :data:`DEFAULT_SIGNED_FIELDS`, plus
            ``"metadata.<name>"`` to sign one top-level metadata key instead of all of
            ``metadata``. The :data:`REQUIRED_FIELDS` are signed whatever is given.
        exclude: dotted paths under ``metadata`` left unsigned (``"metadata.tags"``).

    Raises:
        ConfigError: no key, an invalid key, or an unknown or unremovable field name.

    Example:
        >>> signer = EntrySigner([b"n" * 32, b"o" * 32], signed_fields=["key", "handler"])
        >>> signer.signed_fields == REQUIRED_FIELDS  # metadata opted out
        True
        >>> EntrySigner(b"n" * 32, signed_fields=["colour"])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        cacheness.storage.errors.ConfigError: unknown signed field 'colour'; ...
    """

    def __init__(
        self,
        keys: KeyLike | Sequence[KeyLike],
        *,
        signed_fields: Iterable[str] = DEFAULT_SIGNED_FIELDS,
        exclude: Iterable[str] = (),
    ) -> None:
        listed = [keys] if isinstance(keys, SigningKey | bytes | bytearray | str) else keys
        if not isinstance(listed, Sequence) or not listed:
            raise ConfigError("EntrySigner needs at least one key; " + _HELP)
        self.keys: tuple[SigningKey, ...] = tuple(as_key(key) for key in listed)
        self.key = self.keys[0]
        self._by_id = {key.key_id: _Mac(key.get_secret_value()) for key in reversed(self.keys)}
        self._mac = self._by_id[self.key.key_id]
        self._prefix = f"{SIGNATURE_VERSION}:{self.key.key_id}:"
        self.signed_fields, self._metadata_paths = _check_fields(signed_fields)
        self.exclude: tuple[tuple[str, ...], ...] = tuple(
            _metadata_path(path, "exclude") for path in _names(exclude, "exclude")
        )
        self.needs_metadata = bool(self._metadata_paths)

    def __repr__(self) -> str:
        return (
            f"EntrySigner(key_id={self.key.key_id!r}, keys={len(self.keys)}, "
            f"metadata={'signed' if self.needs_metadata else 'unsigned'})"
        )

    def canonical(self, entry: Entry | PayloadInfo) -> tuple[bytes, bytes]:
        """The bytes signed for ``entry``: a JSON header (the fields in a fixed order,
        dict keys sorted, the inline payload's length) and the inline payload itself."""
        return self._header(entry), entry.inline or b""

    def _header(self, entry: Entry | PayloadInfo) -> bytes:
        inline = entry.inline
        values: list[Any] = [
            entry.key, entry.handler, entry.format, entry.format_info, entry.codec,
            entry.size, entry.raw_size, entry.content_hash, entry.blob_ref,
            -1 if inline is None else len(inline),
        ]  # fmt: skip
        paths = self._metadata_paths
        if paths:
            metadata = entry.metadata or {}
            whole = paths == _WHOLE and not self.exclude
            values.append(metadata if whole else self._signed_metadata(metadata))
        try:
            return _encoder.encode(values)
        except (TypeError, ValueError, OverflowError) as exc:
            raise InvalidEntryError(
                f"entry {entry.key!r} cannot be signed: its metadata or format_info holds a "
                f"value that is not JSON ({exc})"
            ) from exc

    def _signed_metadata(self, metadata: dict[str, Any]) -> Any:
        picked: dict[str, Any] = {}
        for path in self._metadata_paths:
            if not path:
                picked = dict(metadata)
            elif path[0] in metadata:
                picked[path[0]] = metadata[path[0]]
        for path in self.exclude:
            picked = _without(picked, path)
        return picked

    def sign(self, entry: Entry | PayloadInfo) -> str:
        """Return the signature of ``entry`` with the current key: ``v1:<key id>:<hex>``."""
        return self._prefix + self._mac.hexdigest(self._header(entry), entry.inline)

    def check(self, entry: Entry | PayloadInfo) -> Verdict:
        """``"valid"`` (signed by one of the keys), ``"unsigned"`` or ``"invalid"``."""
        signature = entry.signature
        if not signature:
            return "unsigned"
        version, _, rest = signature.partition(":")
        key_id, _, digest = rest.partition(":")
        mac = self._by_id.get(key_id)
        if version != SIGNATURE_VERSION or mac is None:
            return "invalid"
        expected = mac.hexdigest(self._header(entry), entry.inline)
        return "valid" if hmac.compare_digest(expected, digest) else "invalid"

    def is_current(self, entry: Entry | PayloadInfo) -> bool:
        """True when ``entry``'s signature names the current key (no re-signing needed)."""
        return bool(entry.signature) and str(entry.signature).startswith(self._prefix)


class _Mac:
    """HMAC-SHA256 (RFC 2104) with the padded key's hash states computed once: a
    signature then costs two state copies instead of a new HMAC set-up (about 2.5x
    faster than ``hmac.digest`` on small messages; the tests check they agree)."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, secret: bytes) -> None:
        block = hashlib.sha256().block_size
        if len(secret) > block:
            secret = hashlib.sha256(secret).digest()
        padded = secret.ljust(block, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in padded))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in padded))

    def hexdigest(self, header: bytes, payload: bytes | None = None) -> str:
        """The HMAC of ``header`` followed by ``payload`` (if any), in hex."""
        inner = self._inner.copy()
        inner.update(header)
        if payload:
            inner.update(payload)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()


def _names(values: Iterable[str], what: str) -> list[str]:
    if isinstance(values, str) or not isinstance(values, Iterable):
        raise ConfigError(f"{what} takes a list of field names, got {values!r}")
    names = list(values)
    bad = [name for name in names if not isinstance(name, str)]
    if bad:
        raise ConfigError(f"{what} takes field names (str), got {bad[0]!r}")
    return names


def _metadata_path(name: str, what: str) -> tuple[str, ...]:
    head, _, rest = name.partition(".")
    if head != "metadata" or not rest or "" in rest.split("."):
        if name in REQUIRED_FIELDS:
            raise ConfigError(
                f"{what}: {name!r} is always signed (it decides which bytes a read returns "
                "and how they are decoded); only metadata can be left unsigned"
            )
        raise ConfigError(
            f"{what}: {name!r} is not a metadata path; write 'metadata' or 'metadata.<name>'"
        )
    return tuple(rest.split("."))


def _check_fields(fields: Iterable[str]) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]:
    names = _names(fields, "signed_fields")
    paths: list[tuple[str, ...]] = []
    for name in names:
        if name in REQUIRED_FIELDS:
            continue
        if name == "metadata":
            paths.append(())
        elif name.startswith("metadata."):
            paths.append(_metadata_path(name, "signed_fields"))
        else:
            raise ConfigError(
                f"unknown signed field {name!r}; known: {', '.join(DEFAULT_SIGNED_FIELDS)} "
                "and 'metadata.<name>'"
            )
    if () in paths:
        paths = [()]
    signed = REQUIRED_FIELDS + (("metadata",) if paths else ())
    return signed, tuple(sorted(set(paths)))


def _without(value: Any, path: tuple[str, ...]) -> Any:
    if not isinstance(value, dict) or path[0] not in value:
        return value
    copy = dict(value)
    if len(path) == 1:
        del copy[path[0]]
    else:
        copy[path[0]] = _without(copy[path[0]], path[1:])
    return copy
