"""Golden keys: any change of the canonical encoding, accidental or not, breaks here.

The table pins the key of ~50 inputs covering every supported kind of value. If a change
to the encoding is deliberate, bump ``KEY_SCHEMA_VERSION`` (every key changes) and
re-pin the table in the same commit; never re-pin without the bump.

The same table is computed in fresh interpreters with different ``PYTHONHASHSEED``
values (set and dict iteration orders differ between them) to show that keys do not
depend on the process.

This file is also loaded by path in those subprocesses, so it must stay importable on
its own (no fixtures or conftest imports at module level).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import os
import subprocess
import sys
import typing
import uuid
from decimal import Decimal
from fractions import Fraction
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import msgspec

from cacheness import keys

# -- types used by the table; their module is pinned so the keys do not depend on how
# -- this file is imported (pytest's importlib mode vs. loading it by path) -------------


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Perm(enum.Flag):
    READ = 1
    WRITE = 2


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    lr: float
    layers: tuple[int, ...]
    note: str = dataclasses.field(default="", compare=False)


class Window(msgspec.Struct):
    start: int
    stop: int


class Point(typing.NamedTuple):
    x: int
    y: int


class Dataset:
    def __init__(self, name: str, version: int) -> None:
        self.name = name
        self.version = version

    def __cache_key__(self) -> tuple[str, int]:
        return (self.name, self.version)


for _cls in (Color, Perm, TrainConfig, Window, Point, Dataset):
    _cls.__module__ = "golden"


def golden_cases(root: Path) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """Case name -> (params, derive_key options). Files are created under ``root``."""
    import numpy as np
    import pandas as pd

    (root / "data.csv").write_bytes(b"a,b\n1,2\n")
    tree = root / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "top.txt").write_text("top", encoding="utf-8")
    (tree / "sub" / "leaf.bin").write_bytes(bytes(range(256)))

    frame = pd.DataFrame(
        {
            "n": np.array([1, 2, 3], dtype="int64"),
            "x": np.array([0.5, float("nan"), -1.0]),
            "label": pd.Series(["a", None, "c"], dtype=object),
            "cat": pd.Categorical([10, 20, 10]),
        },
        index=pd.Index([7, 8, 9], name="id"),
        columns=pd.Index(["n", "x", "label", "cat"], dtype=object),
    )
    one = {"v": 1}
    cases: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
        "empty": ({}, {}),
        "int": (one, {}),
        "float": ({"v": 1.0}, {}),
        "str": ({"v": "1"}, {}),
        "bool": ({"v": True}, {}),
        "tuple": ({"v": (1,)}, {}),
        "list": ({"v": [1]}, {}),
        "none": ({"v": None}, {}),
        "bytes": ({"v": b"1"}, {}),
        "bytearray": ({"v": bytearray(b"1")}, {}),
        "unicode": ({"v": "héllo ✓ 日本"}, {}),
        "surrogate": ({"v": "bad\udc80name"}, {}),
        "big_int": ({"v": 2**100, "w": -(2**70)}, {}),
        "nan": ({"v": float("nan")}, {}),
        "negative_zero": ({"v": -0.0}, {}),
        "infinity": ({"v": float("-inf")}, {}),
        "complex": ({"v": complex(1.5, -2)}, {}),
        "nested": ({"v": {"b": [1, 2.5, {"c": None}], "a": (True, "x")}}, {}),
        "mixed_keys": ({"v": {1: "a", (2, 3): "b", "k": 1.0}}, {}),
        "str_set": ({"v": {"pear", "apple", "fig", "kiwi"}}, {}),
        "mixed_frozenset": ({"v": frozenset({1, "a", 2.5, (1, 2)})}, {}),
        "decimal": ({"v": Decimal("1.10")}, {}),
        "fraction": ({"v": Fraction(1, 3)}, {}),
        "range": ({"v": range(0, 10, 2)}, {}),
        "uuid": ({"v": uuid.UUID("12345678-1234-5678-1234-567812345678")}, {}),
        "datetime_utc": ({"v": dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.UTC)}, {}),
        "datetime_naive": ({"v": dt.datetime(2024, 5, 1, 12, 30, 0, 250)}, {}),
        "date": ({"v": dt.date(2024, 5, 1)}, {}),
        "time_tz": ({"v": dt.time(8, 15, tzinfo=dt.timezone(dt.timedelta(hours=2)))}, {}),
        "timedelta": ({"v": dt.timedelta(days=-1, microseconds=5)}, {}),
        "enum": ({"v": Color.GREEN}, {}),
        "flag": ({"v": Perm.READ | Perm.WRITE}, {}),
        "dataclass": ({"v": TrainConfig(0.01, (64, 32))}, {}),
        "struct": ({"v": Window(3, 9)}, {}),
        "namedtuple": ({"v": Point(1, 2)}, {}),
        "cache_key": ({"v": Dataset("mnist", 3)}, {}),
        "class": ({"v": Decimal}, {}),
        "pure_paths": ({"p": PurePosixPath("a/b"), "w": PureWindowsPath("C:/x")}, {}),
        "file": ({"v": root / "data.csv"}, {}),
        "directory": ({"v": tree}, {}),
        "ndarray": ({"v": np.arange(6, dtype="float64").reshape(2, 3)}, {}),
        "ndarray_fortran": ({"v": np.asfortranarray(np.arange(6).reshape(2, 3))}, {}),
        "ndarray_object": ({"v": np.array([1, "a", None], dtype=object)}, {}),
        "ndarray_datetime": ({"v": np.array(["2024-01-01"], dtype="datetime64[D]")}, {}),
        "numpy_scalar": ({"v": np.float32(0.1)}, {}),
        "numpy_dtype": ({"v": np.dtype("int16")}, {}),
        "dataframe": ({"v": frame}, {}),
        "series": ({"v": frame["x"]}, {}),
        "multiindex": ({"v": frame.set_index(["n", "label"]).index}, {}),
        "timestamp": ({"v": pd.Timestamp("2024-05-01 12:00:00.000000001", tz="UTC")}, {}),
        "many_kwargs": ({"b": 2, "a": "x", "c": [1.5], "d": None, "e": True}, {}),
        "prefix": (one, {"prefix": "pkg.module.train:v2"}),
    }
    return cases


GOLDEN: dict[str, str] = {
    "empty": "ca77109a8301f36ebd8fb03b3caec7c1",
    "int": "5806e5207b36fb02f477dc31df0779a2",
    "float": "53bfdd298f147ac6ce94069e265de122",
    "str": "33e75d01746a64a5d098d70ef3297b2e",
    "bool": "d312101df2803a9abea83cba696eeb87",
    "tuple": "0379e083da89487aecb80dfb9b30dddb",
    "list": "9643fafeacc6eb4b8712df065f4caa1a",
    "none": "c5b64bea95b9fa985612d2ec9c08c712",
    "bytes": "b5f19a3d4f1974226589e8f518a82a96",
    "bytearray": "74998218c5863b43a92ea98e1551b4db",
    "unicode": "0b9cb0d71e0db78103e77e64681d6006",
    "surrogate": "479cd390401ad657e6de46c0025ff076",
    "big_int": "312f9ac2ae3050d04406195d187b987b",
    "nan": "2a2491631a637e87319d587e4c7be92e",
    "negative_zero": "08a621fc168a8269ff712aef4e2fd638",
    "infinity": "48937f8437f420a42d994a3824f2c4cd",
    "complex": "4951867b8b307f081d2bc8ec3afe6ad5",
    "nested": "3101d823e46eefb840a05dfb09e4237b",
    "mixed_keys": "b7e3d8b28b81d0befda55927068c3d54",
    "str_set": "4d77d76de52a1089738ad59e2f08d9d4",
    "mixed_frozenset": "6bfc651bd51d6e0024e7f1057afea772",
    "decimal": "70a110b456f440820545450190a49247",
    "fraction": "a55fe31a7af729deaf0b8dbad7bb2b8f",
    "range": "187b7661fe8b25cd9cb5078c431df428",
    "uuid": "e72f7cce71a776dc98f9a1da12fb297e",
    "datetime_utc": "4d38a0999b3b95309d79d68ddb070f07",
    "datetime_naive": "b6259fc0478af30ad1d039e6572f4c4b",
    "date": "37b578060e19e3affba31c159bdbca4b",
    "time_tz": "3e3b3a0f90e76bbae201fc33ef7ca02f",
    "timedelta": "0d927e8a338ca0308bb555952148d7e6",
    "enum": "8ed4c31b2adababefb59ead9db11b3af",
    "flag": "05f246b5e67f2909c54241deb23347cf",
    "dataclass": "a1e4a972ef23c8e7f9d4150ea51158f2",
    "struct": "b5a66b34ec870bfedf951b2ced96e0e2",
    "namedtuple": "8ad4c98a418e90e645c66fe803f6b1f4",
    "cache_key": "1f87e0b02175dfb6366305412c04d015",
    "class": "d4134ed2d492902dfff74969f662ad83",
    "pure_paths": "c5c5b95bc17f5c578bca36246a7514e0",
    "file": "fa8d910a158d614ed0e3cf1c82238cbc",
    "directory": "2bb8332175119a591fc79c8761611d8d",
    "ndarray": "416675015b0824d74badb2f5bd0e5c67",
    "ndarray_fortran": "768598cbd104ee51f38d474855c656d9",
    "ndarray_object": "42f84ccb08fdf93443229dfeb3f92ac2",
    "ndarray_datetime": "dd77db8c00fda1bc3bc9601d6d840fac",
    "numpy_scalar": "1d1ae97a128d33775dfa3cd2cac9ce2d",
    "numpy_dtype": "1c2d90353df467a8b763ac307f519437",
    "dataframe": "6e6918ac8b9a7a9a671c1e01edc21935",
    "series": "6b0094e3a3dbb88aab46d27be648d7ae",
    "multiindex": "93ad7ce148b9e74289d95317812f835d",
    "timestamp": "a62a6506eb14de31c266eb381f089d22",
    "many_kwargs": "87e2bda6a26c575a3bef09439c065ffb",
    "prefix": "6fb70acb73c2b0a3b8a469b5338d975c",
}


def compute_keys(root: Path) -> dict[str, str]:
    return {
        name: keys.derive_key(params, **options)
        for name, (params, options) in golden_cases(root).items()
    }


def test_keys_match_the_pinned_table(tmp_path):
    assert keys.KEY_SCHEMA_VERSION == 1, "re-pin GOLDEN together with a schema version bump"
    assert compute_keys(tmp_path) == GOLDEN


def test_every_golden_input_has_its_own_key():
    assert len(set(GOLDEN.values())) == len(GOLDEN)


def test_keys_are_identical_across_processes_and_hash_seeds(tmp_path):
    script = (
        "import importlib.util, json, pathlib, sys\n"
        "spec = importlib.util.spec_from_file_location('golden_probe', sys.argv[1])\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "sys.modules[spec.name] = module\n"
        "spec.loader.exec_module(module)\n"
        "print(json.dumps(module.compute_keys(pathlib.Path(sys.argv[2]))))\n"
    )
    seeds = ("0", "1", "4242")
    running = {}
    for seed in seeds:  # started together: each interpreter imports numpy and pandas
        root = tmp_path / f"seed{seed}"
        root.mkdir()
        running[seed] = subprocess.Popen(
            [sys.executable, "-c", script, __file__, str(root)],
            env={**os.environ, "PYTHONHASHSEED": seed},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    results = {}
    for seed, process in running.items():
        stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
        results[seed] = json.loads(stdout)
    assert results["0"] == GOLDEN
    assert results["1"] == GOLDEN
    assert results["4242"] == GOLDEN
