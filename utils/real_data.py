"""Real data that ships with installed packages or with Python itself. Nothing is downloaded.

- ``stock_prices()``: Google (GOOG) daily prices, 2004-08-19 .. 2008-10-14, 1047 trading days, from
  matplotlib's sample data (``mpl-data/sample_data/goog.npz``, originally from Yahoo! Finance; shipped
  under matplotlib's licence for its examples).
- ``monthly_stocks()``: monthly closing prices of IBM, AAPL, MSFT, ... and the S&P 500, 1990-2022,
  from matplotlib's ``Stocks.csv`` (source: Yahoo! Finance, as the file's first line says).
- ``eeg()``: 4 channels x 800 samples of an electroencephalogram from matplotlib's ``eeg.dat`` (used
  by its "MRI with EEG" example).
- ``python_docs_text()``: the text of the Python documentation's language topics, about 460 KB of
  English prose and code, from the standard library's ``pydoc_data.topics`` (PSF licence).
"""

import csv
import datetime
import pathlib

import numpy as np
import torch

__all__ = ["stock_prices", "monthly_stocks", "eeg", "python_docs_text", "SOURCES"]

SOURCES = {
    "stock_prices": "matplotlib sample data goog.npz (Yahoo! Finance), GOOG 2004-08-19..2008-10-14",
    "monthly_stocks": "matplotlib sample data Stocks.csv (Yahoo! Finance), 1990-2022",
    "eeg": "matplotlib sample data eeg.dat, 4 channels x 800 samples",
    "python_docs_text": "Python standard library pydoc_data.topics (Python docs, PSF licence)",
}


def _sample_data(name):
    import matplotlib

    path = pathlib.Path(matplotlib.get_data_path()) / "sample_data" / name
    if not path.exists():
        raise FileNotFoundError(f"{name}: not found in matplotlib's sample data at {path}; "
                                "is matplotlib installed in full (not a slim build)?")
    return path


def stock_prices(column="adj_close"):
    """GOOG daily prices, 1047 trading days (see the module docstring for the source).

    Inputs:
    - column: one of "open", "high", "low", "close", "volume", "adj_close".

    Returns (dates, values): a list of 1047 ``datetime.date`` and a float32 tensor (1047,).
    """
    columns = ["open", "high", "low", "close", "volume", "adj_close"]
    if column not in columns:
        raise ValueError(f"column: expected one of {columns}, got {column!r}")
    with np.load(_sample_data("goog.npz")) as f:
        data = f["price_data"]
    dates = [datetime.date.fromisoformat(str(d)[:10]) for d in data["date"]]
    return dates, torch.tensor(data[column].astype(np.float64), dtype=torch.float32)


def monthly_stocks():
    """Monthly closing prices from matplotlib's Stocks.csv.

    Returns (dates, prices): a list of ``datetime.date`` and a dict symbol -> float32 tensor of the
    same length, NaN where the symbol had no price yet. Rows with no price at all are dropped.
    """
    with open(_sample_data("Stocks.csv"), newline="") as f:
        rows = [r for r in csv.reader(f) if r and not r[0].startswith("#")]
    header, body = rows[0], rows[1:]
    body = [r for r in body if any(v for v in r[1:])]
    dates = [datetime.date.fromisoformat(r[0]) for r in body]
    prices = {}
    for j, sym in enumerate(header[1:], start=1):
        prices[sym] = torch.tensor([float(r[j]) if r[j] else float("nan") for r in body], dtype=torch.float32)
    return dates, prices


def eeg():
    """An EEG recording: float32 tensor (800, 4), samples by channel (see the module docstring)."""
    raw = np.fromfile(_sample_data("eeg.dat"), dtype=np.float64)
    return torch.tensor(raw.reshape(800, 4), dtype=torch.float32)


def python_docs_text(lowercase=False):
    """About 460 KB of English text: the Python documentation's language topics.

    The topics are joined in sorted order of their names, separated by blank lines. With
    ``lowercase`` the text is lower-cased (a smaller vocabulary for a character model).

    Returns a str.
    """
    from pydoc_data import topics

    text = "\n\n".join(topics.topics[k].strip() for k in sorted(topics.topics))
    return text.lower() if lowercase else text
