"""Training examples from the features store: the examples table, the split, the batches.

An example is one detected transit signal: a (star, signal) pair of the features store whose
period is finite. :func:`load_examples` reads every per-signal and per-star scalar (small:
star × signal) into a table; :func:`split_stars` splits *stars* (grouped by any shared catalogue
ID, so the same star seen by two missions never lands in two splits), stratified by class and
seeded; :class:`ScalarScaler` standardises the model's scalar inputs with the training split's
statistics only; :class:`BatchSource` streams batches out of the Zarr chunks, one star chunk at
a time, so no process ever holds the whole set.

Class imbalance: every example carries a weight, ``n / (2 n_class)`` for its class in the
training split (:func:`class_weights`), which the losses use.

Augmentation (training batches only, ``augment=True``): the global view is rolled by a random
phase shift of up to ``max_shift`` of a period. A shift is physically sound — where phase zero
falls is a convention of the fold, and the primary-to-secondary phase difference is kept — while
reversing time is not (ingress/egress asymmetry, a secondary's phase off 0.5 in an eccentric
binary, and the odd/even order would all be changed), so views are never flipped. The local view
is centred on the transit by construction and is left alone.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import dask
import numpy as np
import numpy.typing as npt
import pandas as pd

from starskope_dask.errors import ConfigError, InputError, StoreError
from starskope_dask.features.layout import STATUS_OK, VARIABLES

logger = logging.getLogger(__name__)

#: Per-signal scalars read into the examples table: every (star, signal) variable of the
#: features store's schema.
SIGNAL_COLUMNS = tuple(name for name, v in VARIABLES.items() if v.dims == ("star", "signal"))
#: Per-star scalars read into the examples table: every (star,) variable of the schema.
STAR_COLUMNS = tuple(name for name, v in VARIABLES.items() if v.dims == ("star",))
ID_COLUMNS = ("kic", "epic", "tic")
#: Array inputs of the models and the features-store variable each comes from.
ARRAY_INPUTS = {
    "global_view": "global_view",
    "local_view": "local_view",
    "local_view_odd": "local_view_odd",
    "local_view_even": "local_view_even",
    "spectrogram": "spectrogram",
}
#: Model inputs are clipped to this range (a flat, noise-free view has a tiny normaliser;
#: standardised scalars beyond 10 sigma carry no more information).
VIEW_CLIP = 10.0


def _log10(values: pd.Series | npt.NDArray[Any], floor: float) -> npt.NDArray[np.float64]:
    array = np.asarray(values, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.log10(np.maximum(array, floor))


def _ratio(a: Any, b: Any) -> npt.NDArray[np.float64]:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(a, dtype=np.float64) / np.asarray(b, dtype=np.float64)


def expected_duration_days(period: Any, rho_solar: Any) -> npt.NDArray[np.float64]:
    """Central-transit duration of a small planet around a star of density ``rho`` (solar
    units): ``T ≈ 13 h (P / 365 d)^{1/3} ρ^{-1/3}`` (Seager & Mallén-Ornelas 2003).
    """
    period = np.asarray(period, dtype=np.float64)
    rho = np.asarray(rho_solar, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return 13.0 / 24.0 * np.cbrt(period / 365.25) / np.cbrt(rho)


def scalar_features(examples: pd.DataFrame) -> pd.DataFrame:
    """The models' scalar inputs, derived from the examples table (NaN where unknown).

    Logarithms for the quantities that span decades; ratios that compare the signal with what
    a planet around this star would show (duration vs the one the star's density implies,
    secondary vs primary depth, odd vs even depths) — the EB tells.
    """
    e = examples
    duration_ratio = _ratio(e["duration"], expected_duration_days(e["period"], e["rho"]))
    secondary_sigma = _ratio(e["secondary_depth"], e["secondary_depth_err"])
    columns = {
        "log_period": _log10(e["period"], 1e-3),
        "log_duration": _log10(e["duration"], 1e-4),
        "duty_cycle": _log10(_ratio(e["duration"], e["period"]), 1e-6),
        "log_depth": _log10(e["depth"], 1e-6),
        "log_snr": _log10(e["snr"], 1.0),
        "sde": np.clip(np.asarray(e["sde"], dtype=np.float64), 0, 100),
        "log_transits": _log10(e["n_transits"], 1.0),
        "is_harmonic": (np.asarray(e["harmonic_of"], dtype=np.float64) >= 0).astype(float),
        "signal_rank": np.asarray(e["signal"], dtype=np.float64),
        "odd_even_sigma": np.clip(np.asarray(e["odd_even_sigma"], dtype=np.float64), -50, 50),
        "log_odd_even_ratio": np.clip(_log10(np.abs(e["odd_even_ratio"]), 1e-3), -3, 3),
        "secondary_sigma": np.clip(secondary_sigma, -50, 50),
        "secondary_ratio": np.clip(_ratio(e["secondary_depth"], e["depth"]), -5, 5),
        "log_duration_ratio": np.clip(_log10(duration_ratio, 1e-3), -3, 3),
        "log_noise": _log10(e["noise_ppm"], 1.0),
        "n_signals": np.asarray(e["n_signals"], dtype=np.float64),
        "n_removed_sinusoids": np.asarray(e["n_removed_sinusoids"], dtype=np.float64),
        "log_variability": _log10(e["variability_amplitude"], 1e-6),
        "rotation_power": np.asarray(e["rotation_power"], dtype=np.float64),
        "teff": np.asarray(e["teff"], dtype=np.float64),
        "logg": np.asarray(e["logg"], dtype=np.float64),
        "log_radius": _log10(e["radius"], 1e-2),
        "log_rho": _log10(e["rho"], 1e-4),
        "tmag": np.asarray(e["tmag"], dtype=np.float64),
        "stellar_missing": np.isnan(np.asarray(e["teff"], dtype=np.float64)).astype(float),
    }
    return pd.DataFrame(columns, index=examples.index)


#: Names of the scalar inputs, in the order the models see them.
SCALAR_NAMES: tuple[str, ...] = tuple(
    scalar_features(
        pd.DataFrame(
            {name: [1.0] for name in (*SIGNAL_COLUMNS, *STAR_COLUMNS, "signal")},
        )
    ).columns
)


def _id_column(values: npt.NDArray[Any]) -> pd.Series:
    series = pd.Series(values, dtype="Int64")
    return series.mask(series < 0)


def load_examples(dataset: Any) -> pd.DataFrame:
    """One row per detected signal (finite period) of a star whose features were computed.

    Parameters
    ----------
    dataset : xarray.Dataset
        The features store (:func:`starskope_dask.features.pipeline.open_features`).

    Returns
    -------
    pandas.DataFrame
        Columns ``star``, ``signal``, the IDs (``kic``, ``epic``, ``tic``: Int64, NA when none),
        ``ra``, ``dec`` and every name of :data:`SIGNAL_COLUMNS` and :data:`STAR_COLUMNS`.

    Raises
    ------
    StoreError
        If the dataset lacks a variable the examples need (not a features store, or one
        written by an incompatible version).
    """
    missing = [n for n in (*SIGNAL_COLUMNS, *STAR_COLUMNS) if n not in dataset.variables]
    if missing:
        raise StoreError(
            f"the features store lacks {', '.join(missing)}: it is not a starskope features "
            "store of this version; run `starskope features` again"
        )
    per_signal = {name: dataset[name].values for name in SIGNAL_COLUMNS}
    per_star = {name: dataset[name].values for name in STAR_COLUMNS}
    n_star, _n_signal = per_signal["period"].shape
    stars = np.asarray(dataset["star"].values, dtype=np.int64)
    keep = np.isfinite(per_signal["period"]) & (per_star["status"] == STATUS_OK)[:, None]
    rows, signals = np.nonzero(keep)
    table: dict[str, Any] = {"star": stars[rows], "signal": signals.astype(np.int64)}
    for name in ID_COLUMNS:
        table[name] = _id_column(np.asarray(dataset[name].values)[rows])
    table["ra"] = np.asarray(dataset["ra"].values, dtype=np.float64)[rows]
    table["dec"] = np.asarray(dataset["dec"].values, dtype=np.float64)[rows]
    for name, values in per_signal.items():
        table[name] = values[rows, signals]
    for name, values in per_star.items():
        table[name] = values[rows]
    examples = pd.DataFrame(table)
    logger.info(
        "%d examples (detected signals) on %d of %d stars",
        len(examples),
        examples["star"].nunique(),
        n_star,
    )
    return examples


# ------------------------------------------------------------------------------ the split


@dataclasses.dataclass(frozen=True)
class Split:
    """Stars of the training, validation and test splits (features-store star indices)."""

    train: tuple[int, ...]
    val: tuple[int, ...]
    test: tuple[int, ...]
    seed: int
    fractions: tuple[float, float, float]

    def of(self, name: str) -> tuple[int, ...]:
        """Stars of split ``name`` (``train``, ``val`` or ``test``)."""
        if name not in ("train", "val", "test"):
            raise ConfigError(f"no split {name!r}: the splits are train, val and test")
        return tuple(getattr(self, name))

    def assignment(self) -> dict[int, str]:
        """Star → split name."""
        return {star: name for name in ("train", "val", "test") for star in self.of(name)}

    def as_table(self) -> pd.DataFrame:
        """The split as a table (star, split), as saved next to the model."""
        pairs = sorted(self.assignment().items())
        return pd.DataFrame(pairs, columns=["star", "split"])


def star_groups(examples: pd.DataFrame) -> dict[int, int]:
    """Star → group: stars that share any catalogue ID (KIC, EPIC or TIC) are one group.

    The cube already joins a star's missions into one row, so most groups hold one star; this
    guards against a star the cross-match left on two rows (two positions of one TIC).
    """
    parent: dict[int, int] = {}

    def find(star: int) -> int:
        while parent[star] != star:
            parent[star] = parent[parent[star]]
            star = parent[star]
        return star

    stars = examples.drop_duplicates("star")
    for star in stars["star"]:
        parent[int(star)] = int(star)
    for name in ID_COLUMNS:
        ids = stars[["star", name]].dropna()
        for _, members in ids.groupby(name)["star"]:
            first = find(int(members.iloc[0]))
            for other in members.iloc[1:]:
                parent[find(int(other))] = first
    return {star: find(star) for star in parent}


def split_stars(
    labelled: pd.DataFrame,
    *,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
) -> Split:
    """Split labelled stars into train/val/test, by star group, stratified by class, seeded.

    Parameters
    ----------
    labelled : pandas.DataFrame
        Labelled examples: ``star``, the ID columns and ``label``.
    val_fraction, test_fraction : float
        Shares of each class's star groups in the validation and test splits.
    seed : int
        Seed of the shuffle (recorded with the model).

    Returns
    -------
    Split
        A group's class is its strongest label (planet, then eb, fp, none), so every class is
        represented in every split in proportion; a whole group lands in one split.
    """
    if not 0 < val_fraction < 1 or not 0 < test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise ConfigError(
            f"split fractions must be in (0, 1) and sum below 1, not val {val_fraction} and "
            f"test {test_fraction}"
        )
    groups = star_groups(labelled)
    rank = {"planet": 0, "eb": 1, "fp": 2, "none": 3}
    label_rank = labelled["label"].map(rank).fillna(3).astype(int)
    star_rank = label_rank.groupby(labelled["star"]).min()
    group_rank: dict[int, int] = {}
    for star, value in star_rank.items():
        group = groups[int(star)]
        group_rank[group] = min(group_rank.get(group, 3), int(value))
    rng = np.random.default_rng([seed, 0x5EED])
    assigned: dict[int, str] = {}
    for value in sorted(set(group_rank.values())):
        members = np.array(sorted(g for g, r in group_rank.items() if r == value))
        rng.shuffle(members)
        n_test = round(test_fraction * len(members))
        n_val = round(val_fraction * len(members))
        if len(members) >= 3:  # every split gets one of a class that has three
            n_test, n_val = max(n_test, 1), max(n_val, 1)
        for i, group in enumerate(members):
            split = "test" if i < n_test else "val" if i < n_test + n_val else "train"
            assigned[int(group)] = split
    by_split: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for star, group in sorted(groups.items()):
        by_split[assigned[group]].append(star)
    return Split(
        train=tuple(by_split["train"]),
        val=tuple(by_split["val"]),
        test=tuple(by_split["test"]),
        seed=seed,
        fractions=(1 - val_fraction - test_fraction, val_fraction, test_fraction),
    )


def split_counts(labelled: pd.DataFrame, split: Split) -> dict[str, dict[str, int]]:
    """Stars and examples per class in each split (for the model card)."""
    where = labelled["star"].map(split.assignment())
    counts: dict[str, dict[str, int]] = {}
    for name in ("train", "val", "test"):
        part = labelled[where == name]
        entry = {"stars": int(part["star"].nunique()), "examples": len(part)}
        for label, n in part["label"].value_counts().sort_index().items():
            entry[f"examples_{label}"] = int(n)
        counts[name] = entry
    return counts


def class_weights(target: npt.NDArray[Any]) -> dict[int, float]:
    """Balanced class weights ``n / (2 n_class)`` of a 0/1 target."""
    target = np.asarray(target)
    n = len(target)
    weights = {}
    for value in (0, 1):
        count = int(np.sum(target == value))
        weights[value] = float(n / (2 * count)) if count else 0.0
    return weights


# ------------------------------------------------------------------------------ scaling


@dataclasses.dataclass(frozen=True)
class ScalarScaler:
    """Standardisation of the scalar inputs, fitted on the training split only.

    NaN (a star without stellar properties, a signal without a secondary measurement) becomes
    0 after scaling: the training mean, with ``stellar_missing`` telling the model.
    """

    names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    spectrogram_mean: float
    spectrogram_std: float

    @classmethod
    def fit(
        cls, scalars: pd.DataFrame, spectrogram_sample: npt.NDArray[Any] | None = None
    ) -> ScalarScaler:
        """Fit on the training examples' scalars (and a sample of their spectrograms)."""
        values = scalars.to_numpy(np.float64)
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(values, axis=0)
            std = np.nanstd(values, axis=0)
        mean = np.where(np.isfinite(mean), mean, 0.0)
        std = np.where(np.isfinite(std) & (std > 1e-12), std, 1.0)
        spec_mean, spec_std = 0.0, 1.0
        if spectrogram_sample is not None:
            finite = np.asarray(spectrogram_sample, dtype=np.float64)
            finite = finite[np.isfinite(finite)]
            if finite.size:
                spec_mean = float(np.mean(finite))
                spec_std = float(np.std(finite)) or 1.0
        return cls(
            tuple(scalars.columns),
            tuple(float(v) for v in mean),
            tuple(float(v) for v in std),
            spec_mean,
            spec_std,
        )

    def transform(self, scalars: pd.DataFrame) -> npt.NDArray[np.float32]:
        """Standardised, NaN-free scalars (n, k) as float32."""
        missing = [name for name in self.names if name not in scalars.columns]
        if missing:
            raise InputError(
                "the scalar features",
                f"{', '.join(missing)} missing",
                "the model was trained on features of another version",
            )
        values = scalars[list(self.names)].to_numpy(np.float64)
        return model_input((values - np.asarray(self.mean)) / np.asarray(self.std))

    def transform_spectrogram(self, spectrogram: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        """Standardised, NaN-free spectrograms."""
        return standardise_spectrogram(spectrogram, self.spectrogram_mean, self.spectrogram_std)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (for the model card)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScalarScaler:
        """Inverse of :meth:`to_dict`."""
        return cls(
            tuple(data["names"]),
            tuple(float(v) for v in data["mean"]),
            tuple(float(v) for v in data["std"]),
            float(data["spectrogram_mean"]),
            float(data["spectrogram_std"]),
        )


def model_input(values: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    """Values as model input: clipped to ±:data:`VIEW_CLIP`, NaN → 0 (the training mean of a
    standardised input; the out-of-transit level of a view's empty bin), float32.
    """
    clipped = np.clip(np.asarray(values, dtype=np.float64), -VIEW_CLIP, VIEW_CLIP)
    return np.nan_to_num(clipped, nan=0.0).astype(np.float32)


def standardise_spectrogram(
    spectrogram: npt.NDArray[Any], mean: float, std: float
) -> npt.NDArray[np.float32]:
    """Spectrograms standardised with the training split's mean and deviation, as input."""
    return model_input((np.asarray(spectrogram, dtype=np.float64) - mean) / std)


def clean_view(view: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    """A view as model input: NaN (empty bins) → 0 (the out-of-transit level), clipped."""
    return model_input(view)


# ------------------------------------------------------------------------------ batches


@dataclasses.dataclass(frozen=True, eq=False)
class BatchSource:
    """A re-iterable, picklable stream of batches of examples out of the features store.

    Calling it returns an iterator over one epoch. It reads one star chunk of the store at a
    time (only the stars and variables it needs), shuffles within a buffer of
    ``shuffle_chunks`` chunks when ``shuffle`` (a new order each call), and yields dicts of
    numpy arrays: ``target``, ``weight``, ``scalars`` and the array ``inputs``
    (``global_view``, ``local_view``, ``spectrogram``, ...), plus ``star`` and ``signal``.

    Attributes
    ----------
    features : str
        URL of the features store.
    stars, signals : array of int
        The examples (features-store star index and signal index).
    scalars : array of float, shape (n, k)
        Their standardised scalar inputs (small; carried along rather than re-read).
    target, weight : array of float
        Labels (1 planet, 0 not) and weights; NaN targets for unlabelled prediction input.
    inputs : tuple of str
        Array inputs to read (keys of :data:`ARRAY_INPUTS`).
    spectrogram_scale : tuple of float
        Mean and standard deviation that standardise the spectrogram.
    batch_size : int
    shuffle, augment : bool
    seed : int
    max_shift : float
        Largest random phase shift of the global view when augmenting (fraction of a period).
    shard_index, shard_count : int
        This source reads only the star chunks ``i`` with ``i % shard_count == shard_index``
        (data-parallel training: one shard per worker).
    storage_options : dict
        fsspec options of the features store.
    """

    features: str
    stars: npt.NDArray[np.int64]
    signals: npt.NDArray[np.int64]
    scalars: npt.NDArray[np.float32]
    target: npt.NDArray[np.float32]
    weight: npt.NDArray[np.float32]
    inputs: tuple[str, ...] = ("global_view", "local_view")
    spectrogram_scale: tuple[float, float] = (0.0, 1.0)
    batch_size: int = 64
    shuffle: bool = False
    augment: bool = False
    seed: int = 0
    max_shift: float = 0.05
    shard_index: int = 0
    shard_count: int = 1
    storage_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    _epochs: list[int] = dataclasses.field(default_factory=lambda: [0], compare=False)

    def __post_init__(self) -> None:
        for name, dtype in (
            ("stars", np.int64),
            ("signals", np.int64),
            ("scalars", np.float32),
            ("target", np.float32),
            ("weight", np.float32),
        ):
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=dtype))
        object.__setattr__(self, "scalars", self.scalars.reshape(len(self.stars), -1))
        n = len(self.stars)
        lengths = {len(self.signals), len(self.scalars), len(self.target), len(self.weight), n}
        if len(lengths) != 1:
            raise ConfigError("stars, signals, scalars, target and weight must be equally long")
        unknown = [name for name in self.inputs if name not in ARRAY_INPUTS]
        if unknown:
            raise ConfigError(f"unknown inputs {unknown}; known: {', '.join(ARRAY_INPUTS)}")
        if not 0 <= self.shard_index < self.shard_count:
            raise ConfigError(f"shard {self.shard_index} of {self.shard_count} does not exist")

    def __len__(self) -> int:
        """Examples of this shard (all of them for an unsharded source)."""
        if self.shard_count == 1:
            return len(self.stars)
        from starskope_dask.features.pipeline import open_features

        dataset = open_features(self.features, dict(self.storage_options))
        return self.n_examples(_star_chunk(dataset))

    def shard(self, index: int, count: int) -> BatchSource:
        """The same source restricted to shard ``index`` of ``count``."""
        return dataclasses.replace(self, shard_index=index, shard_count=count, _epochs=[0])

    def _chunks(self, star_chunk: int) -> dict[int, npt.NDArray[np.int64]]:
        chunk_of = self.stars // star_chunk
        chunks: dict[int, npt.NDArray[np.int64]] = {}
        order = np.argsort(chunk_of, kind="stable")
        for chunk in np.unique(chunk_of):
            if int(chunk) % self.shard_count == self.shard_index:
                chunks[int(chunk)] = order[chunk_of[order] == chunk]
        return chunks

    def n_examples(self, star_chunk: int) -> int:
        """Examples of this shard."""
        return sum(len(v) for v in self._chunks(star_chunk).values())

    def __call__(self) -> Iterator[dict[str, npt.NDArray[Any]]]:
        """One epoch of batches."""
        from starskope_dask.features.pipeline import open_features

        epoch = self._epochs[0]
        self._epochs[0] += 1
        dataset = open_features(self.features, dict(self.storage_options))
        star_chunk = _star_chunk(dataset)
        chunks = self._chunks(star_chunk)
        rng = np.random.default_rng([self.seed, epoch, self.shard_index])
        order = list(chunks)
        if self.shuffle:
            rng.shuffle(order)
        variables = [ARRAY_INPUTS[name] for name in self.inputs]
        pending: list[dict[str, npt.NDArray[Any]]] = []
        buffered = 0
        for position, chunk in enumerate(order):
            pending.append(self._read_chunk(dataset, chunk, star_chunk, chunks[chunk], variables))
            buffered += len(chunks[chunk])
            last = position == len(order) - 1
            if buffered < self.batch_size * 4 and not last:
                continue
            block = {k: np.concatenate([p[k] for p in pending]) for k in pending[0]}
            pending, buffered = [], 0
            index = rng.permutation(len(block["target"])) if self.shuffle else None
            if index is not None:
                block = {k: v[index] for k, v in block.items()}
            for start in range(0, len(block["target"]), self.batch_size):
                batch = {k: v[start : start + self.batch_size] for k, v in block.items()}
                if self.augment and "global_view" in batch:
                    batch["global_view"] = self._shift(batch["global_view"], rng)
                yield batch

    def _read_chunk(
        self,
        dataset: Any,
        chunk: int,
        star_chunk: int,
        members: npt.NDArray[np.int64],
        variables: Sequence[str],
    ) -> dict[str, npt.NDArray[Any]]:
        stars, signals = self.stars[members], self.signals[members]
        first = chunk * star_chunk
        last = min(first + star_chunk, dataset.sizes["star"])
        block = None
        if variables:
            # read here, synchronously: inside a Dask task (a trial, a training worker) the
            # default scheduler would be the cluster's, whose threads that task is holding
            with dask.config.set(scheduler="synchronous"):
                block = dataset[variables].isel(star=slice(first, last)).load()
        out: dict[str, npt.NDArray[Any]] = {
            "star": stars,
            "signal": signals,
            "target": self.target[members],
            "weight": self.weight[members],
            "scalars": self.scalars[members],
        }
        for name in self.inputs:
            values = np.asarray(block[ARRAY_INPUTS[name]].values)  # type: ignore[index]
            if name == "spectrogram":
                out[name] = standardise_spectrogram(values[stars - first], *self.spectrogram_scale)
            else:
                out[name] = clean_view(values[stars - first, signals])
        return out

    def _shift(
        self, views: npt.NDArray[np.float32], rng: np.random.Generator
    ) -> npt.NDArray[np.float32]:
        n_bins = views.shape[1]
        most = int(self.max_shift * n_bins)
        if most < 1:
            return views
        shifts = rng.integers(-most, most + 1, size=len(views))
        return np.stack([np.roll(v, int(s)) for v, s in zip(views, shifts, strict=True)])


def _star_chunk(dataset: Any) -> int:
    """The features store's chunk length along ``star``."""
    encoding = dataset["period"].encoding
    chunks = encoding.get("chunks") or encoding.get("preferred_chunks", {}).get("star")
    if isinstance(chunks, tuple | list):
        return int(chunks[0])
    if isinstance(chunks, int):
        return chunks
    return max(1, int(dataset.sizes["star"]))


def input_shapes(dataset: Any, inputs: Sequence[str], n_scalars: int) -> dict[str, tuple[int, ...]]:
    """Per-example shapes of the model inputs (without the batch dim)."""
    shapes: dict[str, tuple[int, ...]] = {"scalars": (n_scalars,)}
    for name in inputs:
        variable = dataset[ARRAY_INPUTS[name]]
        dims = [d for d in variable.dims if d not in ("star", "signal")]
        shapes[name] = tuple(int(dataset.sizes[d]) for d in dims)
    return shapes


def make_source(
    features: str,
    examples: pd.DataFrame,
    scaler: ScalarScaler,
    *,
    inputs: Sequence[str],
    target: npt.NDArray[Any] | None = None,
    weight: npt.NDArray[Any] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    **options: Any,
) -> BatchSource:
    """A :class:`BatchSource` over ``examples`` (rows of the examples table)."""
    n = len(examples)
    scalars = scaler.transform(scalar_features(examples))
    target = np.full(n, np.nan) if target is None else target
    weight = np.ones(n) if weight is None else weight
    return BatchSource(
        features=features,
        stars=examples["star"].to_numpy(np.int64),
        signals=examples["signal"].to_numpy(np.int64),
        scalars=scalars,
        target=np.asarray(target, dtype=np.float32),
        weight=np.asarray(weight, dtype=np.float32),
        inputs=tuple(inputs),
        spectrogram_scale=(scaler.spectrogram_mean, scaler.spectrogram_std),
        storage_options=dict(storage_options or {}),
        **options,
    )
