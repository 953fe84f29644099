"""Labels for the detected signals: from the simulator's truth, the NASA Exoplanet Archive
tables (KOI, TOI, K2) or any table with an ID column and a label.

:func:`load_labels` gives each (star, signal) of the examples table
(:func:`starskope_dask.train.dataset.load_examples`) one of :data:`LABEL_CLASSES`, or leaves
it out: a row without a label is never trained on. What did not join is in the
:class:`LabelReport` (and the log).

Sources (:func:`parse_label_source`)
------------------------------------
``truth:URL``
    The simulated archive's truth (``URL`` its root, or ``URL/truth/stars.parquet`` itself):
    per star ``label`` (planet, eb, none), ``period``, ``expected_snr`` and its ``kic``,
    ``epic``, ``tic``. The simulator knows every signal it injected, so the world is closed:
    a signal whose period matches the true one at ratio 1, 1/2 or 2
    (:data:`TRUTH_HARMONICS`: eclipsing binaries with equal eclipses come out at P/2, planets
    sometimes at 2P) is that star's (label planet or eb, ``truth_snr`` the expected SNR);
    every other signal of a truth star, quiet, variable, planet host or binary, is a false
    alarm (``none``). A signal at 1/3, 2/3, 3/2 or 3 times the true period
    (:data:`TRUTH_AMBIGUOUS`) holds part of the true signal folded wrongly: calling it a
    false alarm would teach the model that transits are noise, so it is left unlabelled.
``koi:CSV``
    The KOI cumulative table, joined by ``kepid`` (KIC). ``koi_disposition`` CONFIRMED and
    CANDIDATE are planets; FALSE POSITIVE is ``eb`` when ``koi_fpflag_ss`` (stellar eclipse)
    is set and ``fp`` otherwise (only for false positives: confirmed hot Jupiters such as
    HAT-P-7 b carry the flag for their secondary eclipse). Period ``koi_period``;
    ``truth_snr`` is ``koi_model_snr``.
``toi:CSV``
    The TESS Objects of Interest, joined by ``tid`` (TIC). ``tfopwg_disp`` CP, KP, PC, APC
    are planets, FP is ``fp``, FA (false alarm) ``none``; rows without a disposition are
    skipped. Period ``pl_orbper``.
``k2:CSV``
    The planetary systems table of K2 discoveries: every planet in it is a planet (its rows
    are published solutions of confirmed planets); one entry per ``pl_name``, with the period
    of its default solution (``default_flag`` 1). The table has no EPIC column: a host named
    ``EPIC nnnnnnnnn`` is joined by that EPIC ID (an ``epic_hostname`` column, as in the
    archive's K2 candidates table, is used when present), any other host (``K2-18``) by
    position, to the nearest star within :data:`POSITION_RADIUS_ARCSEC` of its ``ra``,
    ``dec``. A ``disposition`` column, when present, is read as in the KOI table.
``csv:URL`` or a bare URL
    A CSV or Parquet table with an ID column (``star``, the features-store star index, or
    ``kic``, ``epic``, ``tic``; any that are present join), ``label`` (planet, eb, fp, none;
    or 1/true/yes = planet, 0/false/no = none) and optionally ``period`` and ``truth_snr``.
    A row with a period labels the signal of that period (ratio 1). A row without one
    labels the star: ``none`` (a star known to have no planet) applies to every signal of
    it; planet, eb and fp apply to its strongest signal (signal 0) only, because a star's
    weaker signals are mostly harmonics or false alarms, and calling those planets would
    teach the model noise.

Matching. A detected period P matches a catalogue period Q at harmonic h when
``|P / (h Q) - 1| <= period_tolerance``; among several entries the closest match wins. The
catalogues match at ratio 1 only: their signals of a star that match no entry are left
unlabelled (counted in :attr:`LabelReport.n_unlabelled_signals`), since in a multi-planet
system near 2:1 resonance a harmonic of one planet is the other planet's period.

Reporting, not crashing. A signal given two different labels (duplicate rows, two entries
at one period, a star-level and a period label that disagree) is left out and listed in
:attr:`LabelReport.conflicts`, and so is a star whose IDs point at two different catalogue
objects (its KIC names one, its TIC another). Catalogue IDs with no row in the examples
(the star is not in the features store, or has no detected signal) are in
:attr:`LabelReport.ids_not_in_features`; rows with unusable values (a non-finite or
non-positive period, a negative ID, no disposition) in :attr:`LabelReport.skipped_rows`.
A source that cannot be read, lacks a required column or holds a label value that means
nothing raises :class:`LabelSourceError` (a :class:`~starskope_dask.errors.LabelError`)
naming the file.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from starskope_dask.errors import ConfigError, LabelError, UnsupportedSchemeError
from starskope_dask.fetch import (
    SUPPORTED_PROTOCOLS,
    SourceOptions,
    check_protocol,
    filesystem,
    local_path,
    url_protocol,
)

logger = logging.getLogger(__name__)

#: The label classes. ``fp``: a catalogue false positive that is not known to be an eclipsing
#: binary (centroid offset, contamination, not transit-like); ``none``: a false alarm or a
#: signal of a star with nothing on it. Only ``planet`` is a positive (target 1).
LABEL_CLASSES = ("planet", "eb", "fp", "none")
#: Source prefixes :func:`parse_label_source` knows.
SOURCE_KINDS = ("truth", "koi", "toi", "k2", "csv")
#: Catalogue ID columns shared with the examples table.
ID_COLUMNS = ("kic", "epic", "tic")
#: Where the simulator writes its truth, below the archive root.
TRUTH_KEY = "truth/stars.parquet"
#: Detected / true period ratios at which a truth signal is the injected one.
TRUTH_HARMONICS = (1.0, 0.5, 2.0)
#: Ratios at which a truth signal holds the injected one folded wrongly (left unlabelled).
TRUTH_AMBIGUOUS = (1.0 / 3.0, 2.0 / 3.0, 1.5, 3.0)
#: Ratios at which a catalogue (KOI, TOI, K2, CSV) period matches a detected one.
CATALOG_HARMONICS = (1.0,)
#: Largest separation (arcsec) of a match by position (K2 hosts without an EPIC name). The
#: archive's positions (Gaia/TIC) and the EPIC's of a star differ by up to ~2" (K2-3: 1.95");
#: a K2 pixel is 4", and the nearest two hosts of the K2 table lie 150" apart.
POSITION_RADIUS_ARCSEC = 5.0
#: Largest ``period_tolerance`` accepted (beyond it the harmonic windows overlap).
MAX_PERIOD_TOLERANCE = 0.1

#: Columns of :attr:`Labels.table`.
LABEL_COLUMNS = ("star", "signal", "label", "target", "truth_snr", "matched_period")
_EXAMPLE_COLUMNS = ("star", "signal", "period")
_KINDS_TEXT = ", ".join(f"{kind}:" for kind in SOURCE_KINDS)
_EXAMPLES_SHOWN = 5
_EXAMPLE = {
    "truth": "sim/ (a simulated archive)",
    "koi": "koi_cumulative.csv",
    "toi": "toi.csv",
    "k2": "planetary_systems_k2.csv",
    "csv": "labels.csv",
}

Floats = npt.NDArray[np.float64]


class LabelSourceError(LabelError):
    """A label source (truth table, catalogue, label table) cannot be used: unreadable,
    without a required column, or with label values that mean nothing.
    """

    what = "label source "


class LabelSourceNotFoundError(LabelSourceError, FileNotFoundError):
    """There is no table at the label source's URL."""


class LabelSourceKindError(LabelSourceError, ConfigError):
    """A ``--labels`` value of no known kind (also a :class:`ConfigError`: it is a setting)."""


@dataclasses.dataclass(frozen=True)
class LabelReport:
    """What a label source gave and what did not join.

    Attributes
    ----------
    source : str
        The source as given (``koi:catalogs/koi_cumulative.csv``).
    n_rows : int
        Rows of the source table.
    n_labelled : int
        Examples (star, signal) that got a label.
    n_positive : int
        Of those, planets (target 1).
    ids_not_in_features : tuple of str
        Catalogue objects (``KIC 11904151``, ``TIC 25155310``, ``K2-18``) with no row in the
        examples: not in the features store, or no detected signal.
    stars_without_match : tuple of int
        Features-store stars given a planet, eb or fp entry of which no signal matched.
    conflicts : tuple of str
        Signals given two labels, and stars whose IDs point at two catalogue objects; all
        left unlabelled.
    n_unlabelled_signals : int
        Signals of stars in the source left unlabelled: a catalogue star's signal that
        matches no entry, or a truth signal at an ambiguous harmonic.
    skipped_rows : tuple of str
        Source rows not used, with the reason (``row 12 (TOI 1234.01): period nan``).
    """

    source: str
    n_rows: int
    n_labelled: int
    n_positive: int
    ids_not_in_features: tuple[str, ...]
    stars_without_match: tuple[int, ...]
    conflicts: tuple[str, ...]
    n_unlabelled_signals: int = 0
    skipped_rows: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Labels:
    """Labels of examples and the report of how they joined.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per labelled example, sorted by star and signal: ``star``, ``signal``
        (int64), ``label`` (one of :data:`LABEL_CLASSES`), ``target`` (int8: 1 planet, 0
        otherwise), ``truth_snr`` (float64, NaN if unknown), ``matched_period`` (float64: the
        catalogue or true period the signal matched, NaN for a star-level label or a false
        alarm).
    report : LabelReport
        What did not join.
    """

    table: pd.DataFrame
    report: LabelReport


@dataclasses.dataclass(frozen=True)
class _Entries:
    """A source read into one row per labelled object (a catalogue row, a truth star)."""

    frame: pd.DataFrame  # see _ENTRY_COLUMNS
    n_rows: int
    skipped: tuple[str, ...]
    harmonics: tuple[float, ...]
    ambiguous: tuple[float, ...] = ()
    closed_world: bool = False  # unmatched signals of a source star are false alarms


# Columns of _Entries.frame: name (the entry, for messages), object (the star it names, for
# ids_not_in_features), star_id / kic / epic / tic (Int64,
# NA when unknown), ra, dec (float; used for a match by position when by_position), label,
# period (NaN: a star-level label), truth_snr.
_ENTRY_COLUMNS = (
    "name",
    "object",
    "star_id",
    "kic",
    "epic",
    "tic",
    "by_position",
    "ra",
    "dec",
    "label",
    "period",
    "truth_snr",
)


# ----------------------------------------------------------------------------- the source


def parse_label_source(text: str) -> tuple[str, str]:
    """Split a ``--labels`` value into its kind and URL.

    Parameters
    ----------
    text : str
        ``truth:URL``, ``koi:CSV``, ``toi:CSV``, ``k2:CSV``, ``csv:URL``, or a bare URL or
        path (a label table, as ``csv:``).

    Returns
    -------
    tuple of str
        ``(kind, url)``, kind one of :data:`SOURCE_KINDS`.

    Raises
    ------
    LabelSourceKindError
        For an empty value, a prefix that is not one of :data:`SOURCE_KINDS` (the message
        lists them) or a prefix without a URL; a :class:`ConfigError` and a
        :class:`~starskope_dask.errors.LabelError`.
    """
    if not isinstance(text, str) or not text.strip():
        raise LabelSourceKindError(
            repr(text),
            "no label source given",
            f"use {_KINDS_TEXT} followed by a URL, or the URL of a label table",
        )
    text = text.strip()
    prefix, sep, rest = text.partition(":")
    kind = prefix.strip().lower()
    if sep and kind in SOURCE_KINDS:
        url = rest.strip()
        if not url:
            raise LabelSourceKindError(
                repr(text), f"{kind}: needs a URL after the colon", f"e.g. {kind}:{_EXAMPLE[kind]}"
            )
        return kind, url
    if url_protocol(text) in SUPPORTED_PROTOCOLS:
        return "csv", text
    raise LabelSourceKindError(
        repr(text),
        f"unknown label source {prefix!r}",
        f"the sources are {_KINDS_TEXT} (e.g. koi:catalogs/koi_cumulative.csv) followed by a "
        "URL, or the URL of a label table",
    )


def truth_url(url: str) -> str:
    """The truth table of a simulated archive: ``url`` itself when it names a Parquet file,
    else ``url/truth/stars.parquet``.
    """
    if url.lower().split("?", 1)[0].endswith((".parquet", ".pq")):
        return url
    return f"{url.rstrip('/')}/{TRUTH_KEY}"


def read_table(url: str, storage_options: SourceOptions = None) -> pd.DataFrame:
    """Read a CSV or Parquet table (local, ``file://``, ``s3://``, ``http(s)://``).

    Leading lines that start with ``#`` (the NASA Exoplanet Archive's header) are skipped;
    a ``#`` later in a line is data (the archive's reference fields hold HTML entities such
    as ``&#x10D;``). Column names are stripped and lower-cased.

    Raises
    ------
    LabelSourceNotFoundError
        If nothing is at ``url``.
    LabelSourceError
        If it is a folder, or cannot be read as CSV or Parquet.
    """
    try:
        protocol = check_protocol(url)
    except UnsupportedSchemeError as exc:
        raise LabelSourceError(str(url), exc.problem, exc.hint) from exc
    try:
        if protocol == "file":
            path = local_path(url)
            if path.is_dir():
                raise LabelSourceError(
                    url, "is a folder, not a table", "give a CSV or Parquet file"
                )
            if not path.exists():
                raise LabelSourceNotFoundError(url, "no such file", "check the path")
            data = path.read_bytes()
        else:
            data = filesystem(protocol, storage_options).cat_file(url)
    except LabelSourceError:
        raise
    except FileNotFoundError as exc:
        raise LabelSourceNotFoundError(url, "no such file or object", "check the URL") from exc
    except Exception as exc:
        raise LabelSourceError(url, f"cannot be fetched: {_short(exc)}") from exc
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise LabelSourceError(url, f"is not valid gzip: {_short(exc)}") from exc
    kind = "Parquet" if data[:4] == b"PAR1" else "CSV"
    try:
        if kind == "Parquet":
            frame = pd.read_parquet(io.BytesIO(data))
        else:
            text = data.decode("utf-8", errors="replace")
            lines = text.splitlines(keepends=True)
            skip = 0
            while skip < len(lines) and (
                lines[skip].lstrip().startswith("#") or not lines[skip].strip()
            ):
                skip += 1
            frame = pd.read_csv(io.StringIO("".join(lines[skip:])), low_memory=False)
    except Exception as exc:
        raise LabelSourceError(
            url, f"cannot be read as {kind}: {_short(exc)}", "give a CSV or Parquet table"
        ) from exc
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    return frame


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"


def _require(frame: pd.DataFrame, url: str, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        shown = ", ".join(list(frame.columns)[:15]) or "none"
        raise LabelSourceError(
            url,
            f"has no column {', '.join(missing)} (its columns: {shown})",
            f"a {what} needs the columns {', '.join(columns)}",
        )


def _first_column(frame: pd.DataFrame, names: Sequence[str]) -> str | None:
    return next((n for n in names if n in frame.columns), None)


# ------------------------------------------------------------------------------ values


def _ids(column: pd.Series, *, zero_ok: bool = False) -> tuple[pd.Series, npt.NDArray[np.bool_]]:
    """IDs as Int64 (NA when missing or -1, the features store's "none") and a mask of bad
    values (other negatives, fractions, text that is not an ID such as ``KIC 123``).
    """
    raw = column
    if raw.dtype == object or pd.api.types.is_string_dtype(raw.dtype):
        text = raw.astype("string").str.strip()
        digits = text.str.extract(
            r"^(?:kic|epic|tic|star)?[\s_:-]*(-?\d+(?:\.0*)?)$", flags=re.IGNORECASE, expand=False
        )
        empty = text.isna() | (text == "")
        values = pd.to_numeric(digits, errors="coerce").to_numpy(np.float64, na_value=np.nan)
        unparsed = ~empty.to_numpy(bool) & ~np.isfinite(values)
    else:
        values = pd.to_numeric(raw, errors="coerce").to_numpy(np.float64, na_value=np.nan)
        unparsed = np.zeros(len(values), bool)
    finite = np.isfinite(values)
    low = 0 if zero_ok else 1
    good = finite & (values >= low) & (values == np.floor(values))
    none = finite & (values == -1)
    bad = unparsed | (finite & ~good & ~none) | (~finite & ~np.isnan(values))
    out = pd.array(np.where(good, values, 0).astype(np.int64), dtype="Int64")
    out[~good] = pd.NA
    return pd.Series(out, index=column.index), bad


def _floats(column: pd.Series | None, n: int) -> Floats:
    if column is None:
        return np.full(n, np.nan)
    return pd.to_numeric(column, errors="coerce").to_numpy(np.float64, na_value=np.nan)


def _period_problem(value: Any) -> str:
    return f"period {value!r} is not a positive finite number of days"


_CSV_LABELS: dict[str, str] = {
    **{name: name for name in LABEL_CLASSES},
    "1": "planet",
    "1.0": "planet",
    "true": "planet",
    "yes": "planet",
    "0": "none",
    "0.0": "none",
    "false": "none",
    "no": "none",
}


def _unparseable(
    url: str, frame: pd.DataFrame, bad: npt.NDArray[np.bool_], column: str, accepted: str
) -> LabelSourceError:
    rows = np.flatnonzero(bad)
    shown = ", ".join(f"row {i + 1}: {frame[column].iloc[i]!r}" for i in rows[:_EXAMPLES_SHOWN])
    return LabelSourceError(
        url,
        f"{len(rows)} values of column {column} are not labels ({shown})",
        f"use {accepted}",
    )


def _id_text(kic: Any, epic: Any, tic: Any) -> str:
    parts = [
        f"{kind.upper()} {int(value)}"
        for kind, value in (("kic", kic), ("epic", epic), ("tic", tic))
        if not pd.isna(value)
    ]
    return "/".join(parts) or "no ID"


def _raw_ids(frame: pd.DataFrame, columns: Iterable[str], i: int) -> str:
    """The ID columns of row ``i`` as read (``kic -7``), for a row whose IDs are unusable."""
    values = {c: frame[c].iloc[i] for c in columns}
    parts = [
        f"{c} {v.item() if isinstance(v, np.generic) else v!r}"
        for c, v in values.items()
        if not pd.isna(v)
    ]
    return ", ".join(parts) or "no ID"


def _id_name(kind: str, ids: pd.Series, raw: pd.Series, i: int) -> str:
    value = ids.iloc[i]
    return f"{kind.upper()} {raw.iloc[i] if pd.isna(value) else int(value)}"


@dataclasses.dataclass
class _Rows:
    """A source table being turned into entries: which rows are kept, and why others are not.

    ``where[i]`` says which row ``i`` is (``row 12 (TIC 25155310 TOI 114.01)``).
    """

    where: list[str]
    keep: npt.NDArray[np.bool_] = dataclasses.field(init=False)
    reasons: dict[int, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        self.keep = np.ones(len(self.where), bool)

    @property
    def skipped(self) -> tuple[str, ...]:
        """``row N (...): reason`` of each row left out, in the table's order."""
        return tuple(f"{self.where[i]}: {why}" for i, why in sorted(self.reasons.items()))

    def skip(self, reject: npt.NDArray[np.bool_], reason: str | Callable[[int], str]) -> None:
        """Leave out the rows ``reject`` that are still kept, recording why."""
        for i in np.flatnonzero(reject & self.keep):
            self.reasons[int(i)] = reason(int(i)) if callable(reason) else reason
        self.keep &= ~reject

    def skip_bad_periods(
        self, period: Floats, raw: pd.Series, given: npt.NDArray[np.bool_] | None = None
    ) -> None:
        """Leave out rows whose (given) period is not positive and finite (``raw``: the
        values as read, for the message).
        """
        ok = np.isfinite(period) & (period > 0)
        values = raw.tolist()
        self.skip(~ok if given is None else given & ~ok, lambda i: _period_problem(values[i]))


def _entries(
    rows: _Rows,
    n_rows: int,
    harmonics: tuple[float, ...],
    *,
    name: Sequence[str],
    label: Sequence[str],
    period: Floats,
    obj: Sequence[str] | None = None,
    ids: Mapping[str, pd.Series] | None = None,
    truth_snr: Floats | None = None,
    by_position: npt.NDArray[np.bool_] | None = None,
    ra: Floats | None = None,
    dec: Floats | None = None,
    ambiguous: tuple[float, ...] = (),
    closed_world: bool = False,
) -> _Entries:
    """The kept rows as an :class:`_Entries` (columns :data:`_ENTRY_COLUMNS`)."""
    n = len(rows.where)
    nan = np.full(n, np.nan)
    frame = pd.DataFrame(
        {
            "name": [str(v) for v in name],
            "object": [str(v) for v in (name if obj is None else obj)],
            **{
                kind: (
                    pd.Series((ids or {})[kind].to_numpy(), dtype="Int64")
                    if kind in (ids or {})
                    else pd.Series(pd.NA, index=range(n), dtype="Int64")
                )
                for kind in ("star_id", *ID_COLUMNS)
            },
            "by_position": np.zeros(n, bool) if by_position is None else by_position,
            "ra": nan if ra is None else ra,
            "dec": nan if dec is None else dec,
            "label": [str(v) for v in label],
            "period": period,
            "truth_snr": nan if truth_snr is None else truth_snr,
        }
    )
    return _Entries(
        frame[rows.keep].reset_index(drop=True),
        n_rows,
        rows.skipped,
        harmonics,
        ambiguous,
        closed_world,
    )


def _no_id(ids: Mapping[str, pd.Series], n: int) -> npt.NDArray[np.bool_]:
    missing = np.ones(n, bool)
    for series in ids.values():
        missing &= series.isna().to_numpy(bool)
    return missing


# --------------------------------------------------------------------------- the readers


def _truth_entries(url: str, storage_options: SourceOptions) -> _Entries:
    url = truth_url(url)
    frame = read_table(url, storage_options)
    what = "simulator truth table (truth/stars.parquet)"
    _require(frame, url, ("label", "period"), what)
    if not any(c in frame.columns for c in ID_COLUMNS):
        _require(frame, url, ("label", "period", "kic|epic|tic"), what)
    n = len(frame)
    labels = frame["label"].astype("string").str.strip().str.lower()
    bad = ~labels.isin(["planet", "eb", "none"]).to_numpy(bool, na_value=False)
    if bad.any():
        raise _unparseable(url, frame, bad, "label", "planet, eb or none (the simulator's labels)")
    ids: dict[str, pd.Series] = {}
    bad_id = np.zeros(n, bool)
    for kind in ID_COLUMNS:
        if kind in frame.columns:
            ids[kind], bad_kind = _ids(frame[kind])
            bad_id |= bad_kind
    index = frame["index"].tolist() if "index" in frame.columns else list(range(n))
    names = []
    for r in range(n):
        text = _id_text(*(ids[k].iloc[r] if k in ids else pd.NA for k in ID_COLUMNS))
        if bad_id[r] or text == "no ID":
            text = _raw_ids(frame, [k for k in ID_COLUMNS if k in ids], r)
        names.append(f"truth star {index[r]} ({text})")
    label_values = labels.to_numpy(str, na_value="none")
    signal = label_values != "none"
    period = np.where(signal, _floats(frame["period"], n), np.nan)
    rows = _Rows([f"row {i + 1} ({name})" for i, name in enumerate(names)])
    rows.skip(bad_id, "an ID is not a positive integer")
    rows.skip(_no_id(ids, n), "no KIC, EPIC or TIC ID")
    rows.skip_bad_periods(period, frame["period"], given=signal)
    snr = _floats(frame["expected_snr"] if "expected_snr" in frame.columns else None, n)
    return _entries(
        rows,
        n,
        TRUTH_HARMONICS,
        name=names,
        label=label_values.tolist(),
        period=period,
        ids=ids,
        truth_snr=np.where(signal, snr, np.nan),
        ambiguous=TRUTH_AMBIGUOUS,
        closed_world=True,
    )


def _disposition(
    url: str, frame: pd.DataFrame, column: str, mapping: Mapping[str, str | None]
) -> tuple[list[str], npt.NDArray[np.bool_]]:
    """Labels of a disposition column and the rows without one (empty, or mapped to None).

    Raises
    ------
    LabelSourceError
        For a value that is not a key of ``mapping``.
    """
    values = frame[column].astype("string").str.strip().str.upper()
    missing = (values.isna() | (values == "")).to_numpy(bool)
    known = values.isin(list(mapping)).to_numpy(bool, na_value=False)
    bad = ~missing & ~known
    if bad.any():
        raise _unparseable(url, frame, bad, column, ", ".join(mapping))
    labels = [mapping.get(v) if isinstance(v, str) else None for v in values.tolist()]
    none = np.array([label is None for label in labels], bool)
    return [label or "none" for label in labels], missing | none


_KOI_DISPOSITIONS: dict[str, str | None] = {
    "CONFIRMED": "planet",
    "CANDIDATE": "planet",
    "FALSE POSITIVE": "fp",
    "NOT DISPOSITIONED": None,
}
_TOI_DISPOSITIONS: dict[str, str | None] = {
    "CP": "planet",
    "KP": "planet",
    "PC": "planet",
    "APC": "planet",
    "FP": "fp",
    "FA": "none",
}
_K2_DISPOSITIONS: dict[str, str | None] = {**_KOI_DISPOSITIONS, "REFUTED": "fp"}


def _koi_entries(url: str, storage_options: SourceOptions) -> _Entries:
    frame = read_table(url, storage_options)
    _require(frame, url, ("kepid", "koi_disposition", "koi_period"), "KOI table")
    n = len(frame)
    ids, bad_id = _ids(frame["kepid"])
    labels, no_label = _disposition(url, frame, "koi_disposition", _KOI_DISPOSITIONS)
    if "koi_fpflag_ss" in frame.columns:
        # a stellar eclipse flags an eclipsing binary only among false positives: confirmed
        # hot Jupiters (HAT-P-7 b) carry it for their planet's secondary eclipse
        stellar = _floats(frame["koi_fpflag_ss"], n) == 1
        labels = ["eb" if s and v == "fp" else v for v, s in zip(labels, stellar, strict=True)]
    koi = frame["kepoi_name"].astype(str).tolist() if "kepoi_name" in frame.columns else None
    objects = [_id_name("kic", ids, frame["kepid"], i) for i in range(n)]
    names = [o + (f" {koi[i]}" if koi else "") for i, o in enumerate(objects)]
    rows = _Rows([f"row {i + 1} ({name})" for i, name in enumerate(names)])
    rows.skip(bad_id, "kepid is not a positive integer")
    rows.skip(ids.isna().to_numpy(bool), "no kepid")
    rows.skip(no_label, "not dispositioned")
    period = _floats(frame["koi_period"], n)
    rows.skip_bad_periods(period, frame["koi_period"])
    snr = _floats(frame["koi_model_snr"], n) if "koi_model_snr" in frame.columns else None
    return _entries(
        rows,
        n,
        CATALOG_HARMONICS,
        name=names,
        obj=objects,
        label=labels,
        period=period,
        ids={"kic": ids},
        truth_snr=snr,
    )


def _toi_entries(url: str, storage_options: SourceOptions) -> _Entries:
    frame = read_table(url, storage_options)
    _require(frame, url, ("tid", "tfopwg_disp", "pl_orbper"), "TOI table")
    n = len(frame)
    ids, bad_id = _ids(frame["tid"])
    labels, no_label = _disposition(url, frame, "tfopwg_disp", _TOI_DISPOSITIONS)
    toi = frame["toi"].astype(str).tolist() if "toi" in frame.columns else None
    objects = [_id_name("tic", ids, frame["tid"], i) for i in range(n)]
    names = [o + (f" TOI {toi[i]}" if toi else "") for i, o in enumerate(objects)]
    rows = _Rows([f"row {i + 1} ({name})" for i, name in enumerate(names)])
    rows.skip(bad_id, "tid is not a positive integer")
    rows.skip(ids.isna().to_numpy(bool), "no tid")
    rows.skip(no_label, "no TFOPWG disposition")
    period = _floats(frame["pl_orbper"], n)
    rows.skip_bad_periods(period, frame["pl_orbper"])
    return _entries(
        rows,
        n,
        CATALOG_HARMONICS,
        name=names,
        obj=objects,
        label=labels,
        period=period,
        ids={"tic": ids},
    )


def _k2_entries(url: str, storage_options: SourceOptions) -> _Entries:
    frame = read_table(url, storage_options)
    _require(frame, url, ("pl_name", "hostname", "pl_orbper"), "K2 planetary systems table")
    n_rows = len(frame)
    period_all = _floats(frame["pl_orbper"], n_rows)
    default = (
        _floats(frame["default_flag"], n_rows) == 1
        if "default_flag" in frame.columns
        else np.zeros(n_rows, bool)
    )
    # one entry per planet: its default solution, else its first row with a finite period
    order = np.lexsort((np.arange(n_rows), ~np.isfinite(period_all), ~default))
    first = pd.Series(frame["pl_name"].to_numpy()[order]).duplicated().to_numpy()
    chosen = np.sort(order[~first])
    frame = frame.iloc[chosen].reset_index(drop=True)
    n = len(frame)
    host_column = "epic_hostname" if "epic_hostname" in frame.columns else "hostname"
    epic_text = (
        frame[host_column]
        .astype("string")
        .str.extract(r"^\s*EPIC[\s_-]*(\d+)", flags=re.IGNORECASE, expand=False)
    )
    ids, bad_id = _ids(epic_text)
    by_position = ids.isna().to_numpy(bool)
    hosts = frame["hostname"].astype(str).tolist()
    objects = [
        hosts[i]
        if by_position[i]
        else f"EPIC {int(ids.iloc[i])}"
        + (f" ({hosts[i]})" if not hosts[i].upper().startswith("EPIC") else "")
        for i in range(n)
    ]
    names = [f"{o}: {p}" for o, p in zip(objects, frame["pl_name"].astype(str), strict=True)]
    if "disposition" in frame.columns:
        labels, no_label = _disposition(url, frame, "disposition", _K2_DISPOSITIONS)
    else:
        labels, no_label = ["planet"] * n, np.zeros(n, bool)
    ra = _floats(frame["ra"] if "ra" in frame.columns else None, n)
    dec = _floats(frame["dec"] if "dec" in frame.columns else None, n)
    rows = _Rows([f"row {chosen[i] + 1} ({name})" for i, name in enumerate(names)])
    rows.skip(bad_id, "EPIC ID is not a positive integer")
    if "pl_controv_flag" in frame.columns:
        rows.skip(_floats(frame["pl_controv_flag"], n) == 1, "controversial planet")
    rows.skip(no_label, "no disposition")
    rows.skip(by_position & ~(np.isfinite(ra) & np.isfinite(dec)), "no EPIC ID and no position")
    period = period_all[chosen]
    rows.skip_bad_periods(period, frame["pl_orbper"])
    return _entries(
        rows,
        n_rows,
        CATALOG_HARMONICS,
        name=names,
        obj=objects,
        label=labels,
        period=period,
        ids={"epic": ids},
        by_position=by_position,
        ra=ra,
        dec=dec,
    )


_CSV_ID_ALIASES: dict[str, tuple[str, ...]] = {
    "star_id": ("star",),
    "kic": ("kic", "kepid", "kic_id", "kicid"),
    "epic": ("epic", "epic_id", "epicid"),
    "tic": ("tic", "tid", "tic_id", "ticid"),
}
_CSV_HINT = (
    "a label table needs an ID column (star, kic, epic or tic) and label (planet, eb, fp, "
    "none, or 1/true and 0/false), optionally period (days) and truth_snr"
)


def _csv_entries(url: str, storage_options: SourceOptions) -> _Entries:
    frame = read_table(url, storage_options)
    id_columns = {
        key: column
        for key, names in _CSV_ID_ALIASES.items()
        if (column := _first_column(frame, names)) is not None
    }
    if "label" not in frame.columns or not id_columns:
        missing = [] if id_columns else ["ID column (star, kic, epic or tic)"]
        missing += [] if "label" in frame.columns else ["label column"]
        shown = ", ".join(list(frame.columns)[:15]) or "none"
        raise LabelSourceError(
            url, f"has no {' and no '.join(missing)} (its columns: {shown})", _CSV_HINT
        )
    n = len(frame)
    raw = frame["label"]
    if pd.api.types.is_bool_dtype(raw.dtype):
        raw = raw.map({True: "planet", False: "none"})
    text = raw.astype("string").str.strip().str.lower()
    empty = (text.isna() | (text == "")).to_numpy(bool)
    labels = text.map(_CSV_LABELS)
    bad = ~empty & labels.isna().to_numpy(bool)
    if bad.any():
        raise _unparseable(
            url, frame, bad, "label", "planet, eb, fp, none, or 1/true (planet) and 0/false (none)"
        )
    ids: dict[str, pd.Series] = {}
    bad_id = np.zeros(n, bool)
    for key, column in id_columns.items():
        ids[key], bad_key = _ids(frame[column], zero_ok=key == "star_id")
        bad_id |= bad_key
    names = []
    for i in range(n):
        star = ids["star_id"].iloc[i] if "star_id" in ids else pd.NA
        text_id = _id_text(*(ids[k].iloc[i] if k in ids else pd.NA for k in ID_COLUMNS))
        parts = ([] if pd.isna(star) else [f"star {int(star)}"]) + (
            [] if text_id == "no ID" else [text_id]
        )
        names.append("/".join(parts) or _raw_ids(frame, id_columns.values(), i))
    rows = _Rows([f"row {i + 1} ({name})" for i, name in enumerate(names)])
    rows.skip(bad_id, "an ID is not a non-negative integer")
    rows.skip(_no_id(ids, n), "no ID")
    rows.skip(empty, "no label")
    if "period" in frame.columns:
        given = ~frame["period"].isna().to_numpy(bool)
        period = np.where(given, _floats(frame["period"], n), np.nan)
        rows.skip_bad_periods(period, frame["period"], given=given)
    else:
        period = np.full(n, np.nan)
    snr_column = _first_column(frame, ("truth_snr", "snr"))
    return _entries(
        rows,
        n,
        CATALOG_HARMONICS,
        name=names,
        label=labels.fillna("none").tolist(),
        period=period,
        ids=ids,
        truth_snr=_floats(frame[snr_column] if snr_column else None, n),
    )


_READERS: dict[str, Callable[[str, SourceOptions], _Entries]] = {
    "truth": _truth_entries,
    "koi": _koi_entries,
    "toi": _toi_entries,
    "k2": _k2_entries,
    "csv": _csv_entries,
}


# ---------------------------------------------------------------------------- the join


def _star_table(examples: pd.DataFrame) -> pd.DataFrame:
    """One row per star of the examples: star, kic, epic, tic (Int64, NA none), ra, dec."""
    stars = examples.drop_duplicates("star")
    out = pd.DataFrame({"star": stars["star"].to_numpy(np.int64)})
    for kind in ID_COLUMNS:
        if kind in stars.columns:
            values = pd.Series(stars[kind].to_numpy(), dtype="Int64")
            out[kind] = values.mask(values <= 0)
        else:
            out[kind] = pd.Series(pd.NA, index=out.index, dtype="Int64")
    for name in ("ra", "dec"):
        out[name] = _floats(stars[name], len(stars)) if name in stars.columns else np.nan
    return out


def _unit(ra: Floats, dec: Floats) -> Floats:
    r, d = np.radians(ra), np.radians(dec)
    return np.column_stack([np.cos(d) * np.cos(r), np.cos(d) * np.sin(r), np.sin(d)])


def _position_pairs(entries: pd.DataFrame, stars: pd.DataFrame) -> pd.DataFrame:
    """(entry, star) for entries joined by position: the nearest star within the radius."""
    wanted = entries.index[
        entries["by_position"] & np.isfinite(entries["ra"]) & np.isfinite(entries["dec"])
    ]
    located = stars[np.isfinite(stars["ra"]) & np.isfinite(stars["dec"])]
    if len(wanted) == 0 or len(located) == 0:
        return pd.DataFrame({"entry": [], "star": []}, dtype=np.int64)
    order = np.argsort(located["dec"].to_numpy())
    dec_sorted = located["dec"].to_numpy()[order]
    vectors = _unit(located["ra"].to_numpy(), located["dec"].to_numpy())[order]
    star_ids = located["star"].to_numpy(np.int64)[order]
    radius = POSITION_RADIUS_ARCSEC / 3600.0
    chord = 2 * math.sin(math.radians(radius) / 2)
    found: list[tuple[int, int]] = []
    for entry in wanted:
        ra, dec = float(entries.at[entry, "ra"]), float(entries.at[entry, "dec"])
        lo = int(np.searchsorted(dec_sorted, dec - radius, side="left"))
        hi = int(np.searchsorted(dec_sorted, dec + radius, side="right"))
        if hi <= lo:
            continue
        distance = np.linalg.norm(vectors[lo:hi] - _unit(np.array([ra]), np.array([dec])), axis=1)
        best = int(np.argmin(distance))
        if distance[best] <= chord:
            found.append((int(entry), int(star_ids[lo + best])))
    return pd.DataFrame(found, columns=["entry", "star"], dtype=np.int64)


def _pairs(entries: pd.DataFrame, stars: pd.DataFrame) -> pd.DataFrame:
    """(entry, star): every features star an entry names by an ID, or by position."""
    frames = []
    keyed = stars.assign(star_id=pd.array(stars["star"].to_numpy(), dtype="Int64"))
    for kind in ("star_id", *ID_COLUMNS):
        left = entries.loc[entries[kind].notna(), [kind]].reset_index(names="entry")
        right = keyed.loc[keyed[kind].notna(), ["star", kind]]
        if len(left) and len(right):
            frames.append(left.merge(right, on=kind)[["entry", "star"]])
    frames.append(_position_pairs(entries, stars))
    pairs = pd.concat(frames, ignore_index=True).astype(np.int64)
    return pairs.drop_duplicates().reset_index(drop=True)


def _id_mismatches(
    pairs: pd.DataFrame, entries: pd.DataFrame, stars: pd.DataFrame
) -> tuple[set[int], list[str]]:
    """Stars whose IDs contradict an entry joined to them (its KIC names the entry, its TIC
    another star): the stars and a message for each.
    """
    joined = pairs.merge(entries[["name", *ID_COLUMNS]], left_on="entry", right_index=True).merge(
        stars[["star", *ID_COLUMNS]], on="star", suffixes=("", "_star")
    )
    bad_stars: set[int] = set()
    messages: list[str] = []
    for kind in ID_COLUMNS:
        mine, theirs = joined[kind], joined[f"{kind}_star"]
        differ = (mine.notna() & theirs.notna() & (mine != theirs)).to_numpy(bool, na_value=False)
        for row in joined[differ].itertuples(index=False):
            bad_stars.add(int(row.star))
            own = _id_text(row.kic_star, row.epic_star, row.tic_star)
            messages.append(
                f"features star {row.star} ({own}) is joined to {row.name} whose "
                f"{kind.upper()} is {getattr(row, kind)}: IDs of two different stars"
            )
    return bad_stars, sorted(set(messages))


def _check_examples(examples: pd.DataFrame) -> None:
    missing = [c for c in _EXAMPLE_COLUMNS if c not in examples.columns]
    if missing:
        raise ConfigError(
            f"the examples table lacks the columns {', '.join(missing)} "
            "(make it with starskope_dask.train.dataset.load_examples)"
        )
    if examples.duplicated(["star", "signal"]).any():
        raise ConfigError("the examples table holds a (star, signal) twice")


def _check_tolerance(period_tolerance: float) -> float:
    try:
        tolerance = float(period_tolerance)
    except (TypeError, ValueError):
        tolerance = math.nan
    if not (math.isfinite(tolerance) and 0 < tolerance <= MAX_PERIOD_TOLERANCE):
        raise ConfigError(
            f"period_tolerance must be a relative tolerance in (0, {MAX_PERIOD_TOLERANCE}], "
            f"not {period_tolerance!r} (0.01 matches periods within 1%)"
        )
    return tolerance


def _nearest_harmonic(ratio: Floats, harmonics: Sequence[float]) -> tuple[Floats, Floats]:
    """The relative error ``|ratio / h - 1|`` at the nearest harmonic h, and that h."""
    if not harmonics:
        return np.full(len(ratio), np.inf), np.full(len(ratio), np.nan)
    errors = np.stack([np.abs(ratio / h - 1.0) for h in harmonics])
    errors = np.where(np.isfinite(errors), errors, np.inf)
    best = np.argmin(errors, axis=0)
    return errors[best, np.arange(len(ratio))], np.asarray(harmonics, np.float64)[best]


def _empty_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "star": np.array([], np.int64),
            "signal": np.array([], np.int64),
            "label": np.array([], object),
            "target": np.array([], np.int8),
            "truth_snr": np.array([], np.float64),
            "matched_period": np.array([], np.float64),
        }
    )


def _label_examples(
    examples: pd.DataFrame,
    source: _Entries,
    pairs: pd.DataFrame,
    tolerance: float,
) -> tuple[pd.DataFrame, list[str], int, set[int]]:
    """Labels of the examples of joined stars; conflicts; unlabelled signals; stars with a
    match of a planet, eb or fp entry.
    """
    entries = source.frame
    rows = examples.loc[examples["star"].isin(pairs["star"]), ["star", "signal", "period"]]
    rows = rows.assign(
        star=rows["star"].to_numpy(np.int64),
        signal=rows["signal"].to_numpy(np.int64),
        period=_floats(rows["period"], len(rows)),
    ).reset_index(drop=True)
    rows["row"] = np.arange(len(rows))
    cross = rows.merge(pairs, on="star").merge(
        entries[["name", "label", "period", "truth_snr"]].rename(
            columns={"period": "entry_period"}
        ),
        left_on="entry",
        right_index=True,
    )
    periodic = np.isfinite(cross["entry_period"].to_numpy())
    ratio = cross["period"].to_numpy() / cross["entry_period"].to_numpy()
    error, _ = _nearest_harmonic(ratio, source.harmonics)
    ambiguous_error, _ = _nearest_harmonic(ratio, source.ambiguous)
    matched = periodic & (error <= tolerance)
    star_level = ~periodic & (
        (cross["label"].to_numpy() == "none") | (cross["signal"].to_numpy() == 0)
    )
    cross["candidate"] = matched | star_level
    cross["ambiguous"] = periodic & ~matched & (ambiguous_error <= tolerance)
    cross["score"] = np.where(matched, error, 1.0)
    candidates = cross[cross["candidate"]].sort_values(["row", "score"], kind="stable")
    n_labels = candidates.groupby("row")["label"].nunique()
    conflicted = n_labels.index[n_labels > 1]
    conflicts = []
    for _, group in candidates[candidates["row"].isin(conflicted)].groupby("row"):
        first = group.iloc[0]
        given = ", ".join(
            f"{label} ({name})" for label, name in zip(group["label"], group["name"], strict=True)
        )
        conflicts.append(
            f"features star {first['star']} signal {first['signal']} "
            f"(period {first['period']:.6g} d): labels {given}"
        )
    best = candidates[~candidates["row"].isin(conflicted)].drop_duplicates("row")
    table = rows.merge(best[["row", "label", "truth_snr", "entry_period"]], on="row", how="left")
    unlabelled = table["label"].isna().to_numpy(bool) & ~table["row"].isin(conflicted).to_numpy()
    ambiguous_rows = cross.loc[cross["ambiguous"], "row"].unique()
    fill = unlabelled & ~np.isin(table["row"].to_numpy(), ambiguous_rows)
    if source.closed_world:
        table.loc[fill, "label"] = "none"
    n_unlabelled = int(table["label"].isna().sum()) - len(conflicted)
    table = table[table["label"].notna()]
    positives = candidates.loc[candidates["label"] != "none", "star"]
    out = pd.DataFrame(
        {
            "star": table["star"].to_numpy(np.int64),
            "signal": table["signal"].to_numpy(np.int64),
            "label": table["label"].to_numpy(object).astype(str).astype(object),
            "target": (table["label"].to_numpy(object) == "planet").astype(np.int8),
            "truth_snr": table["truth_snr"].to_numpy(np.float64, na_value=np.nan),
            "matched_period": table["entry_period"].to_numpy(np.float64, na_value=np.nan),
        }
    )
    return out, conflicts, n_unlabelled, {int(s) for s in positives}


def load_labels(
    source: str,
    examples: pd.DataFrame,
    storage_options: SourceOptions = None,
    period_tolerance: float = 0.01,
) -> Labels:
    """Label the examples from a label source.

    Parameters
    ----------
    source : str
        ``truth:URL``, ``koi:CSV``, ``toi:CSV``, ``k2:CSV``, ``csv:URL`` or a URL (see the
        module's description of each and of the matching rules).
    examples : pandas.DataFrame
        One row per detected signal: ``star``, ``signal``, ``period`` and the IDs ``kic``,
        ``epic``, ``tic`` (NA or -1 when none), ``ra``, ``dec`` (degrees; for K2 hosts
        joined by position), as :func:`~starskope_dask.train.dataset.load_examples` gives.
    storage_options : StorageConfig or mapping, optional
        fsspec options for an ``s3://`` or ``http(s)://`` source.
    period_tolerance : float
        Relative tolerance of a period match (0.01: within 1%), in (0, 0.1].

    Returns
    -------
    Labels
        The labelled examples (rows without a label are left out) and the report.

    Raises
    ------
    LabelSourceKindError
        For an unknown source prefix (a :class:`ConfigError`).
    ConfigError
        For a bad tolerance or an examples table without its columns.
    LabelSourceNotFoundError
        If there is no table at the source's URL.
    LabelSourceError
        If the table cannot be read, lacks a required column or holds label or disposition
        values that mean nothing (the message names the file and a few rows).
    """
    kind, url = parse_label_source(source)
    tolerance = _check_tolerance(period_tolerance)
    _check_examples(examples)
    read = _READERS[kind](url, storage_options)
    entries = read.frame
    stars = _star_table(examples)
    pairs = _pairs(entries, stars)
    bad_stars, conflicts = _id_mismatches(pairs, entries, stars)
    joined_entries = set(pairs["entry"])
    pairs = pairs[~pairs["star"].isin(bad_stars)]
    if len(pairs):
        table, label_conflicts, n_unlabelled, matched_stars = _label_examples(
            examples, read, pairs, tolerance
        )
    else:
        table, label_conflicts, n_unlabelled, matched_stars = _empty_table(), [], 0, set()
    conflicts += label_conflicts
    table = table.sort_values(["star", "signal"]).reset_index(drop=True)
    missing = entries.loc[~entries.index.isin(list(joined_entries)), "object"]
    not_in_features = tuple(sorted(set(missing)))
    positive_entries = entries.index[entries["label"] != "none"]
    expecting = set(pairs.loc[pairs["entry"].isin(positive_entries), "star"].astype(int))
    without_match = tuple(sorted(expecting - matched_stars))
    report = LabelReport(
        source=source,
        n_rows=read.n_rows,
        n_labelled=len(table),
        n_positive=int(table["target"].sum()),
        ids_not_in_features=not_in_features,
        stars_without_match=without_match,
        conflicts=tuple(conflicts),
        n_unlabelled_signals=n_unlabelled,
        skipped_rows=read.skipped,
    )
    _log(report, table)
    return Labels(table, report)


def _few(items: Sequence[Any]) -> str:
    shown = ", ".join(str(i) for i in items[:_EXAMPLES_SHOWN])
    return shown + (", ..." if len(items) > _EXAMPLES_SHOWN else "")


def _log(report: LabelReport, table: pd.DataFrame) -> None:
    counts = table["label"].value_counts()
    by_class = ", ".join(f"{counts.get(name, 0)} {name}" for name in LABEL_CLASSES)
    logger.info(
        "labels %s: %d rows, %d examples labelled (%s), %d signals of source stars unlabelled",
        report.source,
        report.n_rows,
        report.n_labelled,
        by_class,
        report.n_unlabelled_signals,
    )
    if report.ids_not_in_features:
        logger.info(
            "labels %s: %d catalogue objects have no star with a signal in the features (%s)",
            report.source,
            len(report.ids_not_in_features),
            _few(report.ids_not_in_features),
        )
    if report.stars_without_match:
        logger.info(
            "labels %s: %d labelled stars have no signal at a catalogue period (stars %s)",
            report.source,
            len(report.stars_without_match),
            _few(report.stars_without_match),
        )
    if report.skipped_rows:
        logger.info(
            "labels %s: %d rows skipped (%s)",
            report.source,
            len(report.skipped_rows),
            _few(report.skipped_rows),
        )
    if report.conflicts:
        logger.warning(
            "labels %s: %d conflicts left unlabelled (%s)",
            report.source,
            len(report.conflicts),
            _few(report.conflicts),
        )
