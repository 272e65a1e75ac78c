"""Signed entries: the attack catalogue, rotation, key sources and every write path.

The attacker can write the index, the blobs, or both (here: through the backends
themselves, under the store), but does not hold the key. Whatever they do, the planted
pickle never runs (its marker file never appears), the read is a miss or an
``IntegrityError``, and the other entries are untouched. Run on SQLite + files and on
PostgreSQL + S3 (real services).
"""

from __future__ import annotations

import os
import pickle
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cacheness.storage import (
    BlobStore,
    ConfigError,
    Entry,
    EntrySigner,
    IntegrityError,
    SignatureError,
    SigningKey,
    resolve_signing_key,
    user_key_path,
)
from cacheness.storage._signing import REQUIRED_FIELDS, load_or_create_user_key

KEY = "11" * 32
OLD_KEY = "22" * 32
ATTACKED = ["sqlite+filesystem", "postgresql+s3"]


class Boom:
    """Unpickling this creates the marker file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> Any:
        return (open, (self.marker, "w"))


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "executed.marker"


def _victims(store: BlobStore, big: Any) -> dict[str, Any]:
    values = {
        "victim/obj": 1 + 2j,  # pickled (objects handler), inline
        "victim/data": {"a": [1, 2]},  # plain data
        "victim/blob": big(1),  # a blob
        "victim/pickled-blob": [1 + 2j, big(2)],  # pickled, in a blob
        "bystander": "untouched",
    }
    for key, value in values.items():
        store.put(value, key=key, metadata={"owner": "me"})
    return values


def _attacker(pairing: Any, **options: Any) -> BlobStore:
    """A store over the same place that signs nothing (no key)."""
    return pairing.open(signing=False, **options)


def _evil(attacker: BlobStore, marker: Path, key: str, *, blob: bool) -> Entry:
    """The attacker stores a pickle that creates ``marker`` when loaded."""
    payload: Any = [Boom(marker), os.urandom(100_000)] if blob else Boom(marker)
    return attacker.put_entry(payload, key=key)


def _read_outcome(store: BlobStore, key: str) -> str:
    try:
        value = store.get(key, default="<miss>")
    except IntegrityError:
        return "IntegrityError"
    return "miss" if value == "<miss>" else "value"


def _check(store: BlobStore, marker: Path, key: str, values: dict[str, Any], outcome: str) -> None:
    assert not marker.exists(), "the planted pickle ran"
    assert outcome in {"miss", "IntegrityError"}, outcome
    for other, value in values.items():
        if other != key:
            assert store.get(other) == value, other


ATTACKS = [
    "rewrite_handler_format",
    "rewrite_hash_size",
    "inline_pickle",
    "plant_new_entry",
    "swap_blobs",
    "replay_signature",
    "null_signature",
    "foreign_key_signature",
    "blob_overwrite",
]


@pytest.mark.parametrize("name", ATTACKED)
@pytest.mark.parametrize("attack", ATTACKS)
@pytest.mark.parametrize("verify_reads", [True, False])
def test_attack_catalogue(open_pairing, big, marker, name, attack, verify_reads):
    pairing = open_pairing(name)
    store = pairing.open(signing_key=KEY, verify_reads=verify_reads)
    values = _victims(store, big)
    attacker = _attacker(pairing)
    index = store.metadata
    target = "victim/obj"
    if attack == "rewrite_handler_format":
        evil = _evil(attacker, marker, "scratch", blob=False)
        target = "victim/data"
        index.update(target, **_payload_fields(evil))
    elif attack == "rewrite_hash_size":
        evil = _evil(attacker, marker, "scratch", blob=True)
        index.update(target, **_payload_fields(evil))
    elif attack == "inline_pickle":
        evil = _evil(attacker, marker, "scratch", blob=False)
        assert evil.inline is not None
        index.update(target, **_payload_fields(evil))
    elif attack == "plant_new_entry":
        target = "planted"
        _evil(attacker, marker, target, blob=False)
    elif attack == "swap_blobs":
        target = "victim/pickled-blob"
        a, b = index.get(target), index.get("victim/blob")
        assert a is not None
        assert b is not None
        index.update(target, **_payload_fields(b))
        index.update("victim/blob", **_payload_fields(a))
        values.pop("victim/blob")  # both were attacked: both must be refused
        assert _read_outcome(store, "victim/blob") in {"miss", "IntegrityError"}
    elif attack == "replay_signature":
        evil = _evil(attacker, marker, "scratch", blob=False)
        valid = index.get("victim/obj")
        assert valid is not None
        index.update(target, **_payload_fields(evil), signature=valid.signature)
    elif attack == "null_signature":
        evil = _evil(attacker, marker, "scratch", blob=False)
        index.update(target, **_payload_fields(evil), signature=None)
    elif attack == "foreign_key_signature":
        forger = pairing.open(signing_key="33" * 32)
        forged = forger.put_entry(Boom(marker), key="scratch")
        index.update(target, **_payload_fields(forged), signature=forged.signature)
    elif attack == "blob_overwrite":  # blobs only: the bytes under a signed entry change
        evil = _evil(attacker, marker, "scratch", blob=True)
        entry = index.get("victim/pickled-blob")
        assert entry is not None
        assert entry.blob_ref
        target = "victim/pickled-blob"
        _overwrite_blob(pairing, entry.blob_ref, store.blobs.read_bytes(evil.blob_ref))
    _check(store, marker, target, values, _read_outcome(store, target))
    # the other read paths refuse it too
    entry = index.get(target)
    assert entry is not None
    for read in (
        lambda: store.read(entry),
        lambda: store.get_with_metadata(target),
        lambda: store.get_batch([target]),
        lambda: store.lookup(target, with_metadata=True),
    ):
        with pytest.raises(IntegrityError):
            read()
    # a copy or a move never launders it: refused, or as unreadable as the source
    for relocate, dst in ((store.copy, "copied"), (store.move, "moved")):
        try:
            relocate(target, dst)
        except IntegrityError:
            continue
        with pytest.raises(IntegrityError):
            store.get(dst)
        target = dst
    assert not marker.exists()


def _overwrite_blob(pairing: Any, ref: str, data: bytes) -> None:
    """Replace the bytes of blob ``ref`` from outside the store (the file, the object)."""
    options = pairing.options
    if options.get("blob_backend") == "s3":
        import boto3

        bucket = options["blob_options"]["bucket"]
        client_options = {k: v for k, v in options["blob_options"].items() if k != "bucket"}
        client = boto3.client("s3", **client_options)
        client.put_object(Bucket=bucket, Key=ref, Body=data)
    else:
        (Path(options["path"]) / "blobs" / ref).write_bytes(data)
    assert pairing.blob_bytes(ref) == data


def _payload_fields(entry: Entry) -> dict[str, Any]:
    names = ("blob_ref", "handler", "format", "format_info", "codec", "size", "raw_size",
             "content_hash", "inline")  # fmt: skip
    return {name: getattr(entry, name) for name in names}


@pytest.mark.parametrize("name", ATTACKED)
def test_delete_invalid_signatures_removes_only_the_forgery(open_pairing, big, marker, name):
    pairing = open_pairing(name)
    store = pairing.open(signing_key=KEY, delete_invalid_signatures=True)
    values = _victims(store, big)
    attacker = _attacker(pairing)
    evil = _evil(attacker, marker, "scratch", blob=True)
    store.metadata.update("victim/obj", **_payload_fields(evil))  # points at the evil blob
    with pytest.raises(SignatureError, match="was deleted"):
        store.get("victim/obj")
    assert not marker.exists()
    assert not store.exists("victim/obj")
    # the blob the forgery pointed at belongs to "scratch": it stays
    assert store.blobs.exists(evil.blob_ref)
    for key, value in values.items():
        if key != "victim/obj":
            assert store.get(key) == value


def test_unsigned_policies(tmp_path, marker):
    legacy = BlobStore(tmp_path, signing=False)
    legacy.put({"x": 1}, key="data")
    legacy.put(Boom(marker), key="code")
    legacy.close()
    with BlobStore(tmp_path, signing_key=KEY) as store:  # default: accept_data_only
        assert store.get("data") == {"x": 1}
        with pytest.raises(SignatureError, match="unsigned and its format can run code"):
            store.get("code")
    store = BlobStore(tmp_path, signing_key=KEY, unsigned="reject")
    with pytest.raises(SignatureError, match="unsigned='reject'"):
        store.get("data")
    store.close()
    assert not marker.exists()
    with BlobStore(tmp_path, signing_key=KEY, unsigned="accept") as store:
        report = store.resign()
        assert (report.checked, report.resigned) == (2, 2)
    with pytest.raises(ConfigError, match="unsigned must be one of"):
        BlobStore(tmp_path, signing_key=KEY, unsigned="maybe")  # type: ignore[arg-type]


# ----------------------------------------------------------------- rotation and resign


@pytest.mark.parametrize("name", ATTACKED)
def test_rotation_keeps_old_entries_readable_and_resign_moves_them(open_pairing, name):
    pairing = open_pairing(name)
    old = pairing.open(signing_key=OLD_KEY)
    old.put_batch({f"k{i}": i for i in range(5)})
    old.put(b"x" * 50_000, key="blob")
    rotated = pairing.open(signing_key=[KEY, OLD_KEY])
    assert rotated.get("k3") == 3
    new_only = pairing.open(signing_key=KEY)
    with pytest.raises(SignatureError):
        new_only.get("k3")
    report = rotated.resign(batch_size=2)
    assert (report.checked, report.resigned, report.current, report.invalid) == (6, 6, 0, 0)
    assert report.keys == SigningKey.parse(KEY).key_id
    assert new_only.get("k3") == 3
    assert new_only.get("blob") == b"x" * 50_000
    again = rotated.resign()
    assert (again.resigned, again.current) == (0, 6)


def test_resign_never_vouches_for_a_forgery(tmp_path, marker):
    store = BlobStore(tmp_path, signing_key=KEY)
    store.put(1, key="good")
    attacker = BlobStore(tmp_path, signing=False)
    evil = attacker.put_entry(Boom(marker), key="evil")
    store.metadata.update("good", **_payload_fields(evil))
    report = store.resign()
    assert (report.checked, report.invalid, report.unsigned, report.resigned) == (2, 1, 1, 0)
    with pytest.raises(SignatureError):
        store.get("good")
    with pytest.raises(SignatureError):
        store.get("evil")
    assert not marker.exists()
    with pytest.raises(ConfigError, match="signing on"):
        attacker.resign()


# ----------------------------------------------------------------- write paths keep signatures


def test_every_write_path_keeps_signatures_valid(tmp_path):
    store = BlobStore(tmp_path, signing_key=KEY)
    signer = store.signer
    assert signer is not None
    store.put({"v": 1}, key="a", metadata={"m": 1})
    store.put(os.urandom(120_000), key="big")
    store.put_batch({"b": 2, "c": 3}, metadata={"b": {"m": 2}})
    store.update_data("a", {"v": 2}, metadata={"extra": True})
    store.update_metadata("b", {"m": 5})
    store.update_metadata("c", {"only": 1}, merge=False)
    store.update_batch({"a": {"x": 1}, "b": {"x": 2}})
    store.copy("a", "a-copy")
    store.copy("big", "big-copy")
    store.move("b", "b-moved")
    store.record_access(["a", "c"])
    for entry in store.list_entries():
        assert signer.check(entry) == "valid", entry.key
        assert store.get(entry.key) is not None
    assert store.get("a") == {"v": 2}
    assert store.get_metadata("a").metadata == {"m": 1, "extra": True, "x": 1}


def test_a_change_without_the_key_invalidates(tmp_path):
    store = BlobStore(tmp_path, signing_key=KEY)
    store.put({"v": 1}, key="a", metadata={"expires": 10})
    store.metadata.update("a", metadata={"expires": 10**12})  # someone extends it
    with pytest.raises(SignatureError):
        store.get("a")
    # an update through a store with the key never re-signs what it did not verify
    store.update_metadata("a", {"note": "x"})
    with pytest.raises(SignatureError):
        store.get("a")


def test_decoder_checks_the_signature_before_decoding(tmp_path, marker):
    # the in-process memory layer keeps a decoder: it must refuse what get refuses
    store = BlobStore(tmp_path, signing_key=KEY)
    store.put({"v": 1}, key="a")
    assert store.decoder(store.get_metadata("a"))() == {"v": 1}
    BlobStore(tmp_path, signing=False).put_entry(Boom(marker), key="a")  # unsigned pickle
    forged = store.get_metadata("a")
    assert forged is not None
    assert forged.inline is not None
    with pytest.raises(SignatureError):
        store.decoder(forged)
    assert not marker.exists()


def test_metadata_can_be_left_unsigned(tmp_path):
    store = BlobStore(tmp_path, signing_key=KEY, signed_fields=["metadata.keep"],
                      unsigned_paths=["metadata.keep.free"])  # fmt: skip
    store.put(1, key="a", metadata={"keep": {"fixed": 1, "free": 1}, "loose": 1})
    store.metadata.update("a", metadata={"keep": {"fixed": 1, "free": 2}, "loose": 9})
    assert store.get("a") == 1
    store.metadata.update("a", metadata={"keep": {"fixed": 2, "free": 2}, "loose": 9})
    with pytest.raises(SignatureError):
        store.get("a")


# ----------------------------------------------------------------- the signer


def test_field_names_are_validated():
    with pytest.raises(ConfigError, match="unknown signed field 'colour'"):
        EntrySigner(KEY, signed_fields=["colour"])
    with pytest.raises(ConfigError, match="'handler' is always signed"):
        EntrySigner(KEY, exclude=["handler"])
    with pytest.raises(ConfigError, match="not a metadata path"):
        EntrySigner(KEY, exclude=["sizes"])
    with pytest.raises(ConfigError, match="list of field names"):
        EntrySigner(KEY, signed_fields="metadata")
    with pytest.raises(ConfigError, match="at least one key"):
        EntrySigner([])
    assert EntrySigner(KEY, signed_fields=[]).signed_fields == REQUIRED_FIELDS


_ENTRY = Entry.new(
    "k", blob_ref="ab/cd", handler="numpy", format="npy", format_info={"dtype": "f8"},
    codec="zstd", size=10, raw_size=20, content_hash="00" * 16, metadata={"a": [1, 2]},
)  # fmt: skip
_CHANGES = {
    "key": st.text(min_size=1, max_size=20).filter(lambda k: "\x00" not in k),
    "blob_ref": st.text(max_size=10),
    "handler": st.text(max_size=10),
    "format": st.text(max_size=10),
    "format_info": st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    "codec": st.text(max_size=6),
    "size": st.integers(min_value=0),
    "raw_size": st.integers(min_value=0),
    "content_hash": st.text(max_size=32),
    "inline": st.none() | st.binary(max_size=20),
    "metadata": st.dictionaries(st.text(max_size=5), st.integers() | st.text(), max_size=3),
}


@given(data=st.data())
def test_changing_any_covered_field_invalidates_the_signature(data):
    signer = EntrySigner([KEY, OLD_KEY])
    signed = _ENTRY.replace(signature=signer.sign(_ENTRY))
    assert signer.check(signed) == "valid"
    name = data.draw(st.sampled_from(sorted(_CHANGES)))
    value = data.draw(_CHANGES[name])
    changed = signed.replace(**{name: value})
    expected = "valid" if getattr(signed, name) == value else "invalid"
    assert signer.check(changed) == expected
    # fields that are not covered change nothing
    assert signer.check(signed.replace(access_count=7, etag="e", version_id="v")) == "valid"


def test_dict_order_does_not_matter():
    signer = EntrySigner(KEY)
    entry = _ENTRY.replace(metadata={"a": 1, "b": {"y": 2, "x": 1}})
    reordered = entry.replace(metadata={"b": {"x": 1, "y": 2}, "a": 1})
    assert signer.sign(entry) == signer.sign(reordered)


# ----------------------------------------------------------------- keys


def test_a_key_never_prints():
    key = SigningKey.parse(KEY)
    assert KEY not in repr(key)
    assert KEY not in str(key)
    assert "11" * 8 not in repr(key)
    assert repr(key) == f"SigningKey(key_id='{key.key_id}')"
    with pytest.raises(TypeError, match="not pickled"):
        pickle.dumps(key)
    assert SigningKey.parse(__import__("base64").b64encode(bytes.fromhex(KEY)).decode()) == key
    with pytest.raises(ConfigError, match="at least 16 bytes"):
        SigningKey(b"short")
    with pytest.raises(ConfigError, match="neither hex nor base64") as info:
        SigningKey.parse("not a key!")
    assert "not a key" not in str(info.value)


def test_key_sources_in_order(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text(OLD_KEY)
    key_file.chmod(0o600)
    explicit = resolve_signing_key(
        KEY, key_file=key_file, environ={"CACHENESS_SIGNING_KEY": "33" * 32}
    )
    assert explicit == SigningKey.parse(KEY)
    env = resolve_signing_key(key_file=key_file, environ={"CACHENESS_SIGNING_KEY": "33" * 32})
    assert env == SigningKey.parse("33" * 32)
    assert resolve_signing_key(key_file=key_file, environ={}) == SigningKey.parse(OLD_KEY)
    via_env = {"CACHENESS_SIGNING_KEY_FILE": str(key_file)}
    assert resolve_signing_key(environ=via_env) == SigningKey.parse(OLD_KEY)
    assert resolve_signing_key(environ={}) is None
    with pytest.raises(ConfigError, match="CACHENESS_SIGNING_KEY"):
        resolve_signing_key(environ={"CACHENESS_SIGNING_KEY": "zz"})


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_a_key_file_others_can_read_is_refused(tmp_path, mode):
    key_file = tmp_path / "key"
    key_file.write_text(KEY)
    key_file.chmod(mode)
    with pytest.raises(ConfigError, match="chmod 600"):
        SigningKey.from_file(key_file)
    with pytest.raises(ConfigError, match="chmod 600"):
        BlobStore(tmp_path / "store", signing_key_file=key_file)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_a_replaced_user_key_file_readable_by_others_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    BlobStore(tmp_path / "store").close()  # creates the per-user key
    path = user_key_path()
    path.unlink()
    path.write_text("44" * 32)  # the attacker's key, world-readable
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="accessible by group or others"):
        BlobStore(tmp_path / "store")


def test_the_user_key_lives_in_the_config_dir_never_under_the_store(tmp_path, monkeypatch):
    config = tmp_path / "config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    root = tmp_path / "cache"
    with BlobStore(root) as store:
        store.put({"x": 1}, key="a")
    key_file = config / "cacheness" / "signing.key"
    assert key_file.is_file()
    if os.name == "posix":
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key_text = key_file.read_text().strip()
    for path in root.rglob("*"):
        if path.is_file():
            assert key_text.encode() not in path.read_bytes(), path
            assert bytes.fromhex(key_text) not in path.read_bytes(), path
    with BlobStore(root) as again:  # the next process finds the same key
        assert again.get("a") == {"x": 1}


def test_a_user_key_under_the_store_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cache" / "cfg"))
    with pytest.raises(ConfigError, match="inside the store directory"):
        BlobStore(tmp_path / "cache")


def test_concurrent_first_use_agrees_on_one_key(tmp_path):
    path = tmp_path / "cfg" / "cacheness" / "signing.key"
    code = (
        "import sys; from cacheness.storage._signing import load_or_create_user_key as f; "
        "print(f(sys.argv[1]).key_id)"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    ids = {proc.communicate(timeout=60)[0].strip() for proc in procs}
    assert ids == {load_or_create_user_key(path).key_id}
    assert [p.name for p in path.parent.iterdir()] == ["signing.key"]  # no temp file left


def test_a_shared_store_without_a_key_is_refused(open_pairing):
    pairing = open_pairing("postgresql+s3")
    os.environ.pop("CACHENESS_SIGNING_KEY")  # restored by the fixture's monkeypatch
    with pytest.raises(ConfigError, match="CACHENESS_SIGNING_KEY") as info:
        pairing.open()
    assert "signing=False" in str(info.value)
    assert pairing.open(signing=False).signer is None


def test_signing_is_on_by_default_and_off_only_when_asked(tmp_path):
    with BlobStore(metadata_backend="memory", blob_backend="memory") as memory:
        assert memory.signer is not None  # a key of this process only
        memory.put(1, key="k")
        assert memory.get_metadata("k").signature.startswith("v1:")
    with BlobStore(tmp_path, signing=False) as off:
        off.put(1, key="k")
        assert off.get_metadata("k").signature is None
    registry = __import__("cacheness.storage", fromlist=["x"]).default_registry().copy()
    registry.unregister("objects")
    with BlobStore(metadata_backend="memory", blob_backend="memory", handlers=registry) as safe:
        assert safe.signer is None  # nothing here can run code when loaded


def test_the_security_page_examples_run(docs_page):
    page = docs_page("security.md")
    assert page.blocks(), "the page shows how to rotate"
    page.run()
    assert "SIGNING_FIGURES" not in page.text  # the measured figures are quoted


@given(
    secret=st.binary(min_size=16, max_size=100),
    inline=st.none() | st.binary(max_size=300),
    metadata=st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=3),
)
def test_the_signature_is_the_standard_hmac_sha256_of_the_canonical_bytes(secret, inline, metadata):
    """The precomputed pad states give exactly ``hmac.new(key, header + inline, sha256)``,
    for keys longer than a block too (they are hashed first, as RFC 2104 says)."""
    import hashlib
    import hmac

    signer = EntrySigner(secret)
    entry = Entry.new("k", size=len(inline or b""), inline=inline, metadata=metadata, handler="raw")
    header, payload = signer.canonical(entry)
    expected = hmac.new(secret, header + payload, hashlib.sha256).hexdigest()
    assert signer.sign(entry) == f"v1:{signer.key.key_id}:{expected}"
    entry.signature = signer.sign(entry)
    assert signer.check(entry) == "valid"


@pytest.mark.parametrize("index", ["sqlite", "memory"])
def test_a_metadata_update_racing_a_rewrite_never_leaves_a_bad_signature(tmp_path, index):
    """update_metadata reads the entry, then writes metadata and a signature computed from
    it; a writer that replaces the data in between must not end with the old entry's
    signature on its new data: the update applies to the entry it read or is made anew."""
    blobs = "memory" if index == "memory" else "filesystem"
    store = BlobStore(tmp_path, metadata_backend=index, blob_backend=blobs, signing_key=KEY)
    other = store if index == "memory" else BlobStore(tmp_path, signing_key=KEY)
    store.put({"v": 1}, key="k", metadata={"owner": "ana"})
    read = store.metadata.get_many
    raced: list[bool] = []

    def get_many_then_a_rewrite(keys):
        found = read(keys)
        if not raced:  # between the read and the write: another writer replaces the data
            raced.append(True)
            other.put({"v": 2}, key="k", metadata={"owner": "bo"})
        return found

    store.metadata.get_many = get_many_then_a_rewrite  # type: ignore[method-assign]
    assert store.update_metadata("k", {"note": "x"}) is True
    assert raced
    entry = store.get_metadata("k")
    assert store.signer.check(entry) == "valid"
    assert store.get("k") == {"v": 2}  # the rewrite's data, with the update made on top
    assert entry.metadata == {"owner": "bo", "note": "x"}
