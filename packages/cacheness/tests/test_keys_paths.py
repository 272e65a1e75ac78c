"""derive_key on pathlib.Path values: by file or directory content, or by stat."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from cacheness import _keys_paths
from cacheness.keys import derive_key
from cacheness.storage import hash_bytes


def key(value, **options):
    return derive_key({"v": value}, **options)


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def make_tree(root: Path) -> Path:
    write(root / "a.txt", b"alpha")
    write(root / "sub" / "b.bin", b"\x00" * 1000)
    write(root / "sub" / "deeper" / "c.txt", b"gamma")
    return root


# -- files ----------------------------------------------------------------------------------


def test_file_by_content_not_by_name_or_location(tmp_path):
    a = write(tmp_path / "one" / "data.csv", b"x,y\n1,2\n")
    b = write(tmp_path / "two" / "copy.csv", b"x,y\n1,2\n")
    assert key(a) == key(b)
    assert key(a) != key(write(tmp_path / "three.csv", b"x,y\n1,3\n"))


def test_file_key_follows_content_changes(tmp_path):
    path = write(tmp_path / "data.bin", b"v1")
    first = key(path)
    path.write_bytes(b"v2")
    assert key(path) != first
    path.write_bytes(b"v1")
    assert key(path) == first


def test_relative_and_absolute_paths_agree(tmp_path, monkeypatch):
    write(tmp_path / "f.txt", b"content")
    monkeypatch.chdir(tmp_path)
    assert key(Path("f.txt")) == key(tmp_path / "f.txt")


def test_large_file_is_hashed_whole(tmp_path):
    size = 3 * (1 << 20) + 17  # several read chunks, not a multiple of the chunk size
    data = bytes(range(256)) * (size // 256) + b"tail"
    path = write(tmp_path / "big.bin", data)
    assert _keys_paths.file_digest(str(path)) == hash_bytes(data)
    changed = bytearray(data)
    changed[-1] ^= 1
    assert key(path) != key(write(tmp_path / "big2.bin", bytes(changed)))


def test_file_directory_and_string_differ(tmp_path):
    write(tmp_path / "d" / "f", b"x")
    assert len({key(tmp_path / "d" / "f"), key(tmp_path / "d"), key("x"), key(b"x")}) == 4


# -- directories ----------------------------------------------------------------------------


def test_directory_by_relative_paths_and_contents(tmp_path):
    a = make_tree(tmp_path / "a")
    b = make_tree(tmp_path / "b")
    assert key(a) == key(b)


@pytest.mark.parametrize(
    "change",
    [
        lambda root: (root / "a.txt").write_bytes(b"ALPHA"),
        lambda root: (root / "a.txt").rename(root / "renamed.txt"),
        lambda root: (root / "sub" / "deeper" / "c.txt").rename(root / "sub" / "c.txt"),
        lambda root: write(root / "new.txt", b""),
        lambda root: (root / "sub" / "b.bin").unlink(),
    ],
    ids=["content", "rename", "move", "add-empty-file", "delete"],
)
def test_directory_changes_change_the_key(tmp_path, change):
    root = make_tree(tmp_path / "tree")
    before = key(root)
    change(root)
    assert key(root) != before


def test_directory_entry_order_and_empty_directories(tmp_path):
    a = tmp_path / "a"
    for name in ("z", "m", "b"):
        write(a / name, name.encode())
    b = tmp_path / "b"
    for name in ("b", "z", "m"):
        write(b / name, name.encode())
    (b / "empty").mkdir()  # only files count
    assert key(a) == key(b)


def test_directory_is_not_confused_by_path_separators_in_content(tmp_path):
    a = tmp_path / "a"
    write(a / "x" / "y", b"1")
    b = tmp_path / "b"
    write(b / "x" / "y" / "z", b"1")
    assert key(a) != key(b)


def test_symlinks_are_followed(tmp_path):
    target = write(tmp_path / "outside" / "real.txt", b"real")
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "real.txt").symlink_to(target)
    plain = tmp_path / "plain"
    write(plain / "real.txt", b"real")
    assert key(linked) == key(plain)


def test_symlink_cycle_is_an_error(tmp_path):
    root = make_tree(tmp_path / "tree")
    (root / "sub" / "loop").symlink_to(root, target_is_directory=True)
    with pytest.raises(ValueError, match="links back to one of its own parent"):
        key(root)


def test_dangling_symlink_is_an_error(tmp_path):
    root = make_tree(tmp_path / "tree")
    (root / "broken").symlink_to(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="dangling symlink"):
        key(root)


def test_large_tree_is_hashed_in_parallel_with_the_same_result(tmp_path, monkeypatch):
    root = tmp_path / "tree"
    for i in range(40):
        write(root / f"d{i % 4}" / f"f{i:02}.bin", os.urandom(64) + bytes([i]))
    sequential = key(root)

    calls = []
    real_pool = _keys_paths.ThreadPoolExecutor

    def counting_pool(*args, **kwargs):
        calls.append(kwargs.get("max_workers"))
        return real_pool(*args, **kwargs)

    monkeypatch.setattr(_keys_paths, "ThreadPoolExecutor", counting_pool)
    monkeypatch.setattr(_keys_paths, "PARALLEL_MIN_FILES", 8)
    assert key(root) == sequential
    assert calls, "the tree was not hashed on a thread pool"
    assert calls[0] >= 1


def test_small_tree_with_many_bytes_goes_parallel(tmp_path, monkeypatch):
    root = tmp_path / "tree"
    write(root / "a", b"a" * 2048)
    write(root / "b", b"b" * 2048)
    sequential = key(root)
    used = []
    real_pool = _keys_paths.ThreadPoolExecutor
    monkeypatch.setattr(
        _keys_paths, "ThreadPoolExecutor", lambda **kw: used.append(kw) or real_pool(**kw)
    )
    monkeypatch.setattr(_keys_paths, "PARALLEL_MIN_BYTES", 4096)
    assert key(root) == sequential
    assert used


# -- missing and special paths --------------------------------------------------------------


def test_missing_path_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError) as caught:
        derive_key({"out": tmp_path / "result.csv"})
    message = str(caught.value)
    assert "parameter 'out'" in message
    assert "result.csv" in message
    assert "pass the path as a str" in message
    assert "ignore=" in message


def test_socket_is_refused(tmp_path):
    path = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        with pytest.raises(ValueError, match="neither a regular file nor a directory"):
            key(path)


def test_fifo_inside_a_directory_is_refused_without_blocking(tmp_path):
    root = make_tree(tmp_path / "tree")
    os.mkfifo(root / "pipe")
    with pytest.raises(ValueError, match="neither a regular file nor a directory"):
        key(root)


# -- path_mode="stat" -----------------------------------------------------------------------


def test_stat_mode_uses_path_size_and_mtime(tmp_path):
    path = write(tmp_path / "f.bin", b"12345")
    os.utime(path, ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))
    first = key(path, path_mode="stat")
    assert key(path, path_mode="stat") == first
    assert first != key(path)

    os.utime(path, ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_001))
    assert key(path, path_mode="stat") != first

    os.utime(path, ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))
    assert key(path, path_mode="stat") == first

    copy = write(tmp_path / "g.bin", b"12345")
    os.utime(copy, ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))
    assert key(copy, path_mode="stat") != first  # the path counts
    assert key(copy) == key(path)  # content mode ignores it


def test_stat_mode_does_not_read_files(tmp_path, monkeypatch):
    root = make_tree(tmp_path / "tree")

    def no_reading(path):
        raise AssertionError(f"read {path}")

    monkeypatch.setattr(_keys_paths, "file_digest", no_reading)
    first = key(root, path_mode="stat")
    (root / "a.txt").write_bytes(b"alpha, longer")
    assert key(root, path_mode="stat") != first


def test_stat_mode_relative_path_is_made_absolute(tmp_path, monkeypatch):
    write(tmp_path / "f.txt", b"x")
    monkeypatch.chdir(tmp_path)
    assert key(Path("f.txt"), path_mode="stat") == key(tmp_path / "f.txt", path_mode="stat")


def test_stat_mode_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="size and modification time"):
        key(tmp_path / "missing", path_mode="stat")


def test_paths_nested_in_containers_follow_path_mode(tmp_path):
    path = write(tmp_path / "f.txt", b"x")
    assert derive_key({"files": [path]}) != derive_key({"files": [path]}, path_mode="stat")
    assert derive_key({"files": [path]}) == derive_key({"files": [write(tmp_path / "g", b"x")]})
