"""SqlCache: a pull-through cache of daily prices that fetches only what is missing.

A fake market-data API (slow and metered in real life) serves daily bars on business
days. SqlCache keeps them in a SQLite table and asks the API only for the parts of each
request the table lacks: overlapping requests cost one small call, repeated ones none.

Run: python examples/sql_cache.py
"""

from __future__ import annotations

import tempfile
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import Float, Integer

from cacheness import SqlCache


class MarketDataAPI:
    """Daily bars for business days; remembers every call it gets."""

    def __init__(self) -> None:
        self.calls: list[tuple[object, date, date]] = []

    def __call__(self, symbol: str | list[str], start_date: date, end_date: date) -> pd.DataFrame:
        self.calls.append((symbol, start_date, end_date))
        symbols = symbol if isinstance(symbol, list) else [symbol]
        days = pd.bdate_range(start_date, end_date)
        frames = []
        for name in symbols:
            seed = sum(map(ord, name))
            ordinals = np.array([day.toordinal() for day in days])
            frames.append(
                pd.DataFrame(
                    {
                        "symbol": name,
                        "date": days,
                        "close": (100 + seed % 50 + 10 * np.sin(ordinals / 9 + seed)).round(2),
                        "volume": 1_000 * (ordinals % 17 + seed % 7),
                    }
                )
            )
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def main() -> None:
    api = MarketDataAPI()
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'prices.db'}"
        with SqlCache.for_timeseries(
            url, data_fetcher=api, time_increment="1B", close=Float, volume=Integer
        ) as prices:
            requests = [
                ("first quarter", "AAPL", date(2024, 1, 1), date(2024, 3, 29)),
                ("February again", "AAPL", date(2024, 2, 1), date(2024, 2, 29)),
                ("into April", "AAPL", date(2024, 3, 1), date(2024, 4, 30)),
                ("three symbols", ["AAPL", "MSFT", "NVDA"], date(2024, 1, 1), date(2024, 4, 30)),
            ]
            for label, symbol, start, end in requests:
                before = len(api.calls)
                result = prices.get_result(symbol=symbol, start_date=start, end_date=end)
                asked = api.calls[before:]
                print(
                    f"{label:15} {len(result.data):4} rows  {result.status.value:8} "
                    f"API calls: {asked if asked else 'none'}"
                )
            frame = prices.get_data(symbol="MSFT", start_date="2024-04-01", end_date="2024-04-05")
            print()
            print(frame[["symbol", "date", "close", "volume", "cached_at"]].to_string(index=False))
            stats = prices.get_cache_stats()
            print()
            print(
                f"{stats['total_records']} rows cached, {stats['fetch_calls']} API calls, "
                f"{stats['hits']} requests answered from the table alone"
            )


if __name__ == "__main__":
    main()
