"""Mount table parsing and the network-filesystem warning of the JSON backend."""

from __future__ import annotations

import pytest

from cacheness.storage import JsonMetadataBackend
from cacheness.storage._metadata import _fs
from cacheness.storage.errors import NetworkFilesystemWarning

TABLE = r"""22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
40 22 0:50 / /srv/team rw,relatime shared:2 - nfs4 server:/export rw,vers=4.2
41 40 0:51 / /srv/team/local rw shared:3 - ext4 /dev/sdb1 rw
42 22 0:52 / /mnt/my\040share rw - cifs //nas/share rw
43 22 0:53 / /mnt/sshfs rw - fuse.sshfs me@host:/ rw
"""


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/srv/team/cache/index.sqlite", "nfs4"),
        ("/srv/team", "nfs4"),
        ("/srv/team/local/index.sqlite", None),
        ("/srv/teamwork/index.sqlite", None),
        ("/mnt/my share/x.json", "cifs"),
        ("/mnt/sshfs/x", "fuse.sshfs"),
        ("/home/me/x", None),
    ],
)
def test_network_filesystem_detection(path, expected):
    assert _fs.network_filesystem(path, TABLE) == expected


def test_unreadable_mount_table_means_unknown(tmp_path, monkeypatch):
    monkeypatch.setattr(_fs, "MOUNTINFO", tmp_path / "missing")
    assert _fs.mount_of("/anything") is None
    assert _fs.network_filesystem("/anything") is None


def test_json_backend_warns_on_a_network_filesystem(tmp_path, monkeypatch):
    fake = tmp_path / "mountinfo"
    fake.write_text(
        f"22 1 8:1 / / rw - ext4 /dev/sda1 rw\n40 22 0:5 / {tmp_path} rw - nfs srv:/x rw\n"
    )
    monkeypatch.setattr(_fs, "MOUNTINFO", fake)
    monkeypatch.setattr(_fs, "_warned", set())
    with pytest.warns(NetworkFilesystemWarning, match="file locks are unreliable"):
        JsonMetadataBackend(tmp_path / "index.json")
