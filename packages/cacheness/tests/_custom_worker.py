"""Child process of the custom metadata race test (run as a script, never imported).

Usage: ``python _custom_worker.py CONFIG_JSON WORKER PUTS``: prints ``ready``, waits for
a line on stdin, then puts PUTS values under one key, each with two custom rows naming
this worker and the put's number (the entry's metadata names them too), and exits.
"""

from __future__ import annotations

import json
import sys

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from cacheness import CustomMetadataBase, cacheness, custom_metadata_model


@custom_metadata_model("race_rows")
class RaceRow(CustomMetadataBase):
    __tablename__ = "custom_race_rows"
    worker: Mapped[int] = mapped_column(Integer, index=True)
    put: Mapped[int] = mapped_column(Integer)
    part: Mapped[str] = mapped_column(String(10))


def main() -> None:
    config, worker, puts = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    with cacheness(**config) as cache:
        print("ready", flush=True)
        sys.stdin.readline()
        for number in range(puts):
            rows = [RaceRow(worker=worker, put=number, part=part) for part in ("a", "b")]
            cache.put(
                f"value {worker}/{number}",
                metadata={"worker": worker, "put": number},
                custom_metadata=rows,
                cache_key="contested",
            )


if __name__ == "__main__":
    main()
