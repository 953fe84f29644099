"""Keras models of transit candidates and their single-process (or strategy-wide) training loop.

Two classifiers, one autoencoder:

``cnn``
    The AstroNet two-branch 1-D CNN (Shallue & Vanderburg 2018, AJ 155, 94, Fig. 3): the global
    view (2001 bins over the whole orbit) through five convolutional blocks (two convolutions of
    kernel 5 each, then max-pooling of 5 with stride 2), the local view (201 bins around the
    transit) through two blocks (max-pooling of 7, stride 2); the flattened branches are
    concatenated with the scalar features (transit and stellar properties, as AstroNet's
    successors do), then fully connected layers and one sigmoid output. Block ``i`` has
    ``filters * 2**i`` filters (AstroNet: ``filters=16``, four dense layers of 512 units).
``spectrogram-cnn``
    A small 2-D CNN over the (time, frequency) spectrogram: three blocks of two 3×3 convolutions
    and 2×2 max-pooling, flattened, concatenated with the scalars, then the same dense head.
autoencoder
    A convolutional autoencoder of the spectrogram whose latent vector is an unsupervised
    feature (the seed's objective 4), trained on reconstruction error.

Inputs are named ``global_view``, ``local_view``, ``scalars`` and ``spectrogram``
(:func:`model_inputs`), so a batch dict feeds the model as is. The output is float32 even under
mixed precision.

Training is a custom loop (``tf.GradientTape``), not ``model.fit``: Keras 3 ``fit`` fails under
``MultiWorkerMirroredStrategy`` (keras#20585), and the same loop serves one process (the default
strategy) and :mod:`starskope_dask.train.distributed`. The loss is the binary cross-entropy
weighted by each example's ``weight`` (the class weights that balance planets against the rest),
averaged over the global batch; early stopping watches the validation ROC-AUC and restores the
best epoch's weights. Empty view bins (NaN) are read as 0, the view's median.

TensorFlow and Keras are imported inside the functions only: importing this module does not
import TensorFlow (≈ 6 s and 750 MB).
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import hashlib
import logging
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from starskope_dask.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover - hints only
    import keras  # noqa: F401

logger = logging.getLogger(__name__)

Batch = Mapping[str, npt.NDArray[Any]]
BatchSource = Callable[[], Iterator[Batch]]
"""A zero-argument callable returning a fresh iterator over one epoch of batch dicts."""

KINDS = ("cnn", "spectrogram-cnn")
"""The Keras classifiers :func:`build_model` knows."""

_INPUTS: dict[str, tuple[str, ...]] = {
    "cnn": ("global_view", "local_view", "scalars"),
    "spectrogram-cnn": ("spectrogram", "scalars"),
}

MODEL_FILE = "model.keras"
"""Name of the saved Keras model inside a model URL."""

GLOBAL_BLOCKS = 5
LOCAL_BLOCKS = 2
SPECTROGRAM_BLOCKS = 3


def model_inputs(kind: str) -> tuple[str, ...]:
    """The input names (batch keys) a model kind reads.

    Parameters
    ----------
    kind : str
        ``"cnn"`` or ``"spectrogram-cnn"``.

    Returns
    -------
    tuple of str
    """
    _check_kind(kind)
    return _INPUTS[kind]


def _check_kind(kind: str) -> None:
    if kind not in _INPUTS:
        close = difflib.get_close_matches(str(kind), KINDS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"kind: unknown model {kind!r}; known: {', '.join(KINDS)}{hint}")


# ----------------------------------------------------------------------------- parameters


@dataclasses.dataclass(frozen=True)
class CnnParams:
    """Hyper-parameters of a Keras classifier and its training.

    Attributes
    ----------
    kind : str
        ``"cnn"`` (AstroNet views) or ``"spectrogram-cnn"``.
    learning_rate : float
        Adam's learning rate.
    batch_size : int
        Examples per step and per worker (the global batch of ``n`` workers is ``n`` times it).
    epochs : int
        Most epochs to train.
    patience : int
        Epochs without a better validation ROC-AUC before training stops.
    dropout : float
        Dropout rate after each dense layer, in [0, 1).
    filters : int
        Filters of the first convolutional block; block ``i`` has ``filters * 2**i``.
    dense_units : int
        Units of each fully connected layer.
    dense_layers : int
        Fully connected layers before the output (AstroNet: 4).
    l2 : float
        L2 penalty on the kernels (0: none).
    seed : int
        Seed of the weights, dropout and anything else Keras draws.
    mixed_precision : bool or None
        ``mixed_float16``: None turns it on when a GPU is present, True/False force it.
    """

    kind: str = "cnn"
    learning_rate: float = 5e-4
    batch_size: int = 64
    epochs: int = 50
    patience: int = 6
    dropout: float = 0.3
    filters: int = 16
    dense_units: int = 512
    dense_layers: int = 4
    l2: float = 0.0
    seed: int = 0
    mixed_precision: bool | None = None

    def __post_init__(self) -> None:
        _check_kind(self.kind)
        positive_ints = ("batch_size", "epochs", "patience", "filters", "dense_units")
        for name in (*positive_ints, "dense_layers", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise ConfigError(f"{name}: must be an integer, got {value!r}")
            low = 1 if name in positive_ints else 0
            if value < low:
                raise ConfigError(f"{name}: must be at least {low}, got {value}")
        for name in ("learning_rate", "dropout", "l2"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float | np.number):
                raise ConfigError(f"{name}: must be a number, got {value!r}")
            if not math.isfinite(float(value)):
                raise ConfigError(f"{name}: must be finite, got {value}")
        if not self.learning_rate > 0:
            raise ConfigError(f"learning_rate: must be positive, got {self.learning_rate}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout: must be in [0, 1), got {self.dropout}")
        if self.l2 < 0:
            raise ConfigError(f"l2: must not be negative, got {self.l2}")
        if self.mixed_precision not in (None, True, False):
            raise ConfigError(
                f"mixed_precision: must be true, false or null (auto), got {self.mixed_precision!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """The parameters as a JSON-serialisable dict (for the model card)."""
        out = dataclasses.asdict(self)
        for name in ("batch_size", "epochs", "patience", "filters", "dense_units", "dense_layers"):
            out[name] = int(out[name])
        for name in ("learning_rate", "dropout", "l2"):
            out[name] = float(out[name])
        out["seed"] = int(out["seed"])
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CnnParams:
        """Parameters from a dict (a model card, a config file); unknown keys are refused.

        Raises
        ------
        ConfigError
            For an unknown key (with the closest known one) or an invalid value.
        """
        known = [f.name for f in dataclasses.fields(cls)]
        for key in data:
            if key not in known:
                close = difflib.get_close_matches(str(key), known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(f"{key}: unknown CNN parameter{hint}; known: {', '.join(known)}")
        return cls(**dict(data))


# ----------------------------------------------------------------------------- results


@dataclasses.dataclass(frozen=True)
class TrainedModel:
    """A trained classifier and how its training went.

    Attributes
    ----------
    model : keras.Model
        The model, with the weights of its best validation epoch.
    history : list of dict
        One dict per epoch: ``epoch`` (1-based), ``loss`` (weighted training loss),
        ``val_loss``, ``val_auc``, ``seconds``, ``examples_per_s`` (training examples over all
        workers per second) and ``best_epoch`` (best so far).
    best_epoch : int
        The epoch whose weights the model holds.
    best_val_auc : float
        Its validation ROC-AUC.
    device : str
        ``"GPU"`` or ``"CPU"``.
    mixed_precision : bool
        Whether the model computes in float16.
    n_workers : int
        Processes that trained it (1 without a multi-worker strategy).
    weights_digests : tuple of str
        SHA-256 of the final weights on every worker (identical when training was synchronous).
    """

    model: Any
    history: list[dict[str, Any]]
    best_epoch: int
    best_val_auc: float
    device: str
    mixed_precision: bool
    n_workers: int = 1
    weights_digests: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class TrainedAutoencoder:
    """A trained spectrogram autoencoder.

    Attributes
    ----------
    autoencoder, encoder : keras.Model
        The whole model (spectrogram → spectrogram) and its encoder (spectrogram → latent).
    history : list of dict
        Per epoch: ``epoch``, ``loss`` and ``val_loss`` (mean squared error), ``seconds``,
        ``best_epoch`` (so far).
    best_epoch : int
        The epoch whose weights the models hold (lowest validation loss).
    """

    autoencoder: Any
    encoder: Any
    history: list[dict[str, Any]]
    best_epoch: int


def weights_digest(weights: Sequence[npt.NDArray[Any]]) -> str:
    """SHA-256 of a list of weight arrays (dtype, shape and bytes of each, in order)."""
    digest = hashlib.sha256()
    for array in weights:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


# ----------------------------------------------------------------------------- devices


def gpu_present() -> bool:
    """Whether TensorFlow sees a GPU."""
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def _wants_mixed_precision(params: CnnParams) -> bool:
    gpu = gpu_present()
    if params.mixed_precision is None:
        return gpu
    if params.mixed_precision and not gpu:
        logger.warning("mixed precision requested without a GPU: float16 on the CPU is slow")
    return bool(params.mixed_precision)


@contextlib.contextmanager
def _dtype_policy(mixed: bool) -> Iterator[None]:
    """Build layers under ``mixed_float16`` (or float32), restoring the global policy after."""
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16" if mixed else "float32")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def _is_mixed(model: Any) -> bool:
    return any(
        getattr(getattr(layer, "dtype_policy", None), "compute_dtype", "float32") == "float16"
        for layer in model.layers
    )


# ----------------------------------------------------------------------------- builders


def _check_shapes(kind: str, shapes: Mapping[str, tuple[int, ...]]) -> None:
    expected_rank = {"global_view": 1, "local_view": 1, "scalars": 1, "spectrogram": 2}
    for name in model_inputs(kind):
        if name not in shapes:
            raise ConfigError(f"shapes: {kind} needs the input {name!r}; got {sorted(shapes)}")
        shape = tuple(shapes[name])
        if len(shape) != expected_rank[name] or any(int(n) < 1 for n in shape):
            raise ConfigError(
                f"shapes: {name} must have {expected_rank[name]} positive dims "
                f"(without the batch dim), got {shape}"
            )


def build_model(kind: str, shapes: Mapping[str, tuple[int, ...]], params: CnnParams) -> Any:
    """A Keras classifier of one candidate: probability that it is a planet.

    Parameters
    ----------
    kind : str
        ``"cnn"`` or ``"spectrogram-cnn"``.
    shapes : mapping of str to tuple of int
        Per-example shape of each input (no batch dim): ``global_view`` (G,), ``local_view``
        (L,), ``scalars`` (S,), ``spectrogram`` (T, F); only those of :func:`model_inputs`.
    params : CnnParams
        Filters, dense layers, dropout, L2, seed and precision.

    Returns
    -------
    keras.Model
        Functional model with inputs named after the batch keys and one float32 output
        ``score`` of shape (n, 1) in [0, 1].
    """
    _check_shapes(kind, shapes)
    with _dtype_policy(_wants_mixed_precision(params)):
        return _build(kind, shapes, params)


def _build(kind: str, shapes: Mapping[str, tuple[int, ...]], params: CnnParams) -> Any:
    import keras
    from keras import layers

    keras.utils.set_random_seed(params.seed)
    regularizer = keras.regularizers.L2(params.l2) if params.l2 > 0 else None
    conv: dict[str, Any] = {
        "padding": "same",
        "activation": "relu",
        "kernel_regularizer": regularizer,
    }
    inputs = {
        name: keras.Input(shape=tuple(int(n) for n in shapes[name]), name=name)
        for name in model_inputs(kind)
    }

    def branch_1d(x: Any, name: str, blocks: int, pool: int) -> Any:
        x = layers.Reshape((*tuple(x.shape[1:]), 1), name=f"{name}_channel")(x)
        for block in range(blocks):
            width = params.filters * 2**block
            for k in range(2):
                x = layers.Conv1D(width, 5, name=f"{name}_conv{block}_{k}", **conv)(x)
            if x.shape[1] >= pool:
                x = layers.MaxPooling1D(pool, strides=2, name=f"{name}_pool{block}")(x)
        return layers.Flatten(name=f"{name}_flat")(x)

    if kind == "cnn":
        parts = [
            branch_1d(inputs["global_view"], "global", GLOBAL_BLOCKS, 5),
            branch_1d(inputs["local_view"], "local", LOCAL_BLOCKS, 7),
        ]
    else:
        x = layers.Reshape((*tuple(inputs["spectrogram"].shape[1:]), 1), name="spec_channel")(
            inputs["spectrogram"]
        )
        for block in range(SPECTROGRAM_BLOCKS):
            width = params.filters * 2**block
            for k in range(2):
                x = layers.Conv2D(width, 3, name=f"spec_conv{block}_{k}", **conv)(x)
            if min(x.shape[1:3]) >= 2:
                x = layers.MaxPooling2D(2, name=f"spec_pool{block}")(x)
        parts = [layers.Flatten(name="spec_flat")(x)]
    x = layers.Concatenate(name="concat")([*parts, inputs["scalars"]])
    for k in range(params.dense_layers):
        x = layers.Dense(
            params.dense_units, activation="relu", kernel_regularizer=regularizer, name=f"fc{k}"
        )(x)
        if params.dropout > 0:
            x = layers.Dropout(params.dropout, seed=params.seed + k, name=f"dropout{k}")(x)
    logit = layers.Dense(1, dtype="float32", name="logit")(x)
    score = layers.Activation("sigmoid", dtype="float32", name="score")(logit)
    return keras.Model(inputs=inputs, outputs=score, name=kind.replace("-", "_"))


def build_autoencoder(shape: tuple[int, int], latent: int, params: CnnParams) -> tuple[Any, Any]:
    """A convolutional autoencoder of the spectrogram and its encoder.

    Two strided 3×3 convolutions (``filters`` and ``2 filters``) halve the time and frequency
    axes twice, a dense layer gives the ``latent`` vector; the decoder mirrors it with
    transposed convolutions and a linear output.

    Parameters
    ----------
    shape : (int, int)
        Spectrogram shape (time, frequency); both divisible by 4.
    latent : int
        Length of the latent vector.
    params : CnnParams
        Uses ``filters``, ``l2``, ``seed`` and ``mixed_precision``.

    Returns
    -------
    (keras.Model, keras.Model)
        The autoencoder (input ``spectrogram``, output ``reconstruction`` of the same shape,
        float32) and the encoder (input ``spectrogram``, output ``latent``, float32).
    """
    shape = (int(shape[0]), int(shape[1]))
    if len(shape) != 2 or shape[0] % 4 or shape[1] % 4 or min(shape) < 4:
        raise ConfigError(f"shape: spectrogram dims must be multiples of 4, got {shape}")
    if isinstance(latent, bool) or int(latent) < 1:
        raise ConfigError(f"latent: must be a positive integer, got {latent!r}")
    with _dtype_policy(_wants_mixed_precision(params)):
        import keras
        from keras import layers

        keras.utils.set_random_seed(params.seed)
        regularizer = keras.regularizers.L2(params.l2) if params.l2 > 0 else None
        opts: dict[str, Any] = {
            "padding": "same",
            "activation": "relu",
            "kernel_regularizer": regularizer,
        }
        inp = keras.Input(shape=shape, name="spectrogram")
        x = layers.Reshape((*shape, 1), name="enc_channel")(inp)
        x = layers.Conv2D(params.filters, 3, strides=2, name="enc_conv0", **opts)(x)
        x = layers.Conv2D(2 * params.filters, 3, strides=2, name="enc_conv1", **opts)(x)
        inner = tuple(int(n) for n in x.shape[1:])
        x = layers.Flatten(name="enc_flat")(x)
        code = layers.Dense(int(latent), dtype="float32", name="latent")(x)
        y = layers.Dense(int(np.prod(inner)), activation="relu", name="dec_dense")(code)
        y = layers.Reshape(inner, name="dec_reshape")(y)
        y = layers.Conv2DTranspose(params.filters, 3, strides=2, name="dec_conv0", **opts)(y)
        y = layers.Conv2DTranspose(1, 3, strides=2, padding="same", name="dec_conv1")(y)
        y = layers.Reshape(shape, dtype="float32", name="reconstruction")(y)
        autoencoder = keras.Model(inp, y, name="spectrogram_autoencoder")
        encoder = keras.Model(inp, code, name="spectrogram_encoder")
    return autoencoder, encoder


# ----------------------------------------------------------------------------- data


def _dataset(
    source: BatchSource,
    names: Sequence[str],
    shapes: Mapping[str, tuple[int, ...]],
    batch_size: int,
    *,
    labelled: bool = True,
    repeat: bool = False,
) -> Any:
    """A ``tf.data`` pipeline over a batch source: only ``names`` (+ target and weight),
    NaN read as 0, re-batched to ``batch_size`` (full batches only when ``repeat``).
    """
    import tensorflow as tf

    keys = tuple(names) + (("target", "weight") if labelled else ())

    def generate() -> Iterator[dict[str, npt.NDArray[np.float32]]]:
        for batch in source():
            out = {}
            for key in keys:
                if key not in batch:
                    raise ConfigError(f"batch source: batches lack {key!r}; got {sorted(batch)}")
                out[key] = np.nan_to_num(np.asarray(batch[key], dtype=np.float32), nan=0.0)
            if labelled and not np.all(np.isfinite(out["target"])):
                raise ConfigError("batch source: targets must be 0 or 1 to train, found NaN")
            yield out

    signature = {
        name: tf.TensorSpec((None, *(int(n) for n in shapes[name])), tf.float32) for name in names
    }
    if labelled:
        signature["target"] = tf.TensorSpec((None,), tf.float32)
        signature["weight"] = tf.TensorSpec((None,), tf.float32)
    data = tf.data.Dataset.from_generator(generate, output_signature=signature).unbatch()
    if repeat:
        data = data.repeat().batch(batch_size, drop_remainder=True)
    else:
        data = data.batch(batch_size)
    return data.prefetch(tf.data.AUTOTUNE)


def _model_input_shapes(model: Any) -> dict[str, tuple[int, ...]]:
    return {t.name: tuple(int(n) for n in t.shape[1:]) for t in model.inputs}


def count_examples(source: BatchSource) -> int:
    """Examples in one epoch of a source (``len(source)`` when it has one, else one pass)."""
    if hasattr(source, "__len__"):
        return len(source)
    return sum(len(batch["target"]) for batch in source())


def _forward(model: Any) -> Callable[[Any], Any]:
    """A compiled inference step of a model (one per model: make it once, call it often)."""
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def step(inputs: Any) -> Any:
        return model(inputs, training=False)

    return step


def _predict(
    model: Any,
    source: BatchSource,
    batch_size: int,
    *,
    labelled: bool,
    step: Callable[[Any], Any] | None = None,
) -> dict[str, npt.NDArray[np.float64]]:
    shapes = _model_input_shapes(model)
    data = _dataset(source, list(shapes), shapes, batch_size, labelled=labelled)
    step = step or _forward(model)
    scores: list[npt.NDArray[np.float64]] = []
    targets: list[npt.NDArray[np.float64]] = []
    weights: list[npt.NDArray[np.float64]] = []
    for batch in data:
        inputs = {name: batch[name] for name in shapes}
        scores.append(np.asarray(step(inputs), dtype=np.float64).reshape(-1))
        if labelled:
            targets.append(batch["target"].numpy().astype(np.float64))
            weights.append(batch["weight"].numpy().astype(np.float64))
    out = {"score": np.concatenate(scores) if scores else np.zeros(0)}
    if labelled:
        out["target"] = np.concatenate(targets) if targets else np.zeros(0)
        out["weight"] = np.concatenate(weights) if weights else np.zeros(0)
    return out


def predict_scores(
    model: Any, source: BatchSource, batch_size: int = 256
) -> npt.NDArray[np.float64]:
    """Scores (probability of a planet) of every example of a source, in its order.

    Parameters
    ----------
    model : keras.Model
        A classifier of :func:`build_model` (its input names select the batch keys).
    source : callable
        Batch source; targets are not needed.
    batch_size : int
        Examples per forward pass.

    Returns
    -------
    numpy.ndarray of float64, shape (n,)
    """
    return _predict(model, source, batch_size, labelled=False)["score"]


def _weighted_bce(
    target: npt.NDArray[Any], score: npt.NDArray[Any], weight: npt.NDArray[Any]
) -> float:
    eps = 1e-7
    p = np.clip(score, eps, 1 - eps)
    loss = -(target * np.log(p) + (1 - target) * np.log(1 - p))
    return float(np.mean(weight * loss)) if len(loss) else math.nan


def validation_metrics(
    model: Any,
    source: BatchSource,
    batch_size: int = 256,
    *,
    step: Callable[[Any], Any] | None = None,
) -> dict[str, float]:
    """Weighted binary cross-entropy and ROC-AUC of a model on a labelled source.

    ``step`` is the model's inference step (:func:`_forward`) when called once per epoch.

    Raises
    ------
    ConfigError
        When the source holds only one class (the ROC-AUC is undefined).
    """
    from sklearn.metrics import roc_auc_score

    out = _predict(model, source, batch_size, labelled=True, step=step)
    classes = np.unique(out["target"])
    if len(classes) < 2:
        raise ConfigError(
            f"validation set: {len(out['target'])} examples of class {classes.tolist()} only; "
            "early stopping needs planets and non-planets (more labelled stars, another seed)"
        )
    return {
        "val_loss": _weighted_bce(out["target"], out["score"], out["weight"]),
        "val_auc": float(roc_auc_score(out["target"], out["score"])),
    }


# ----------------------------------------------------------------------------- training


def train_model(
    kind: str,
    shapes: Mapping[str, tuple[int, ...]],
    params: CnnParams,
    train_source: BatchSource,
    val_source: BatchSource,
    *,
    strategy: Any = None,
    steps_per_epoch: int | None = None,
) -> TrainedModel:
    """Train a classifier with a custom loop and early stopping on the validation ROC-AUC.

    Parameters
    ----------
    kind : str
        ``"cnn"`` or ``"spectrogram-cnn"``.
    shapes : mapping
        Per-example input shapes (see :func:`build_model`).
    params : CnnParams
        Hyper-parameters; ``params.kind`` is not consulted (``kind`` is).
    train_source, val_source : callable
        Batch sources (zero-argument callables returning an iterator of batch dicts with
        the inputs, ``target`` and ``weight``). The training source should shuffle itself.
    strategy : tf.distribute.Strategy, optional
        Build and train under it (``MultiWorkerMirroredStrategy`` in
        :mod:`~starskope_dask.train.distributed`); the default strategy when None.
    steps_per_epoch : int, optional
        Fixed steps per epoch over the repeated training source (every batch full). Workers of
        a multi-worker strategy must all take the same number of steps; when None, an epoch is
        one pass over the source (the last batch may be partial).

    Returns
    -------
    TrainedModel
        The model at its best validation epoch and the history.

    Notes
    -----
    Every worker of a strategy evaluates the whole validation source and the metrics are then
    averaged across workers, so early stopping takes the same decision everywhere.
    """
    import keras
    import tensorflow as tf

    _check_shapes(kind, shapes)
    if steps_per_epoch is not None and steps_per_epoch < 1:
        raise ConfigError(f"steps_per_epoch: must be at least 1, got {steps_per_epoch}")
    strategy = strategy if strategy is not None else tf.distribute.get_strategy()
    n_replicas = int(strategy.num_replicas_in_sync)
    n_workers = _n_workers(strategy)
    device = "GPU" if gpu_present() else "CPU"
    mixed = _wants_mixed_precision(params)
    logger.info(
        "training %s on %s (%d replica(s), %d worker(s), mixed precision %s)",
        kind, device, n_replicas, n_workers, "on" if mixed else "off",
    )  # fmt: skip
    names = model_inputs(kind)
    with strategy.scope():
        model = build_model(kind, shapes, dataclasses.replace(params, mixed_precision=mixed))
        optimizer: Any = keras.optimizers.Adam(params.learning_rate)
        if mixed:
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        optimizer.build(model.trainable_variables)

    def input_fn(context: Any) -> Any:
        return _dataset(
            train_source, names, shapes, params.batch_size, repeat=steps_per_epoch is not None
        )

    data = strategy.distribute_datasets_from_function(input_fn)
    bce = keras.losses.BinaryCrossentropy(reduction=None)

    def step_fn(batch: Any) -> tuple[Any, Any]:
        inputs = {name: batch[name] for name in names}
        with tf.GradientTape() as tape:
            score = model(inputs, training=True)
            per_example = bce(batch["target"][:, None], score) * batch["weight"]
            loss = tf.nn.compute_average_loss(per_example)
            if model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
            scaled = optimizer.scale_loss(loss)  # the loss itself unless mixed precision
        grads = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss, tf.shape(batch["target"])[0]

    @tf.function(reduce_retracing=True)
    def train_step(batch: Any) -> tuple[Any, Any]:
        loss, n = strategy.run(step_fn, args=(batch,))
        return (
            strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None),
            strategy.reduce(tf.distribute.ReduceOp.SUM, n, axis=None),
        )

    forward, agree = _forward(model), _agreement(strategy)
    history: list[dict[str, Any]] = []
    best_auc, best_epoch, best_weights = -math.inf, 0, model.get_weights()
    iterator = iter(data) if steps_per_epoch is not None else None
    for epoch in range(1, params.epochs + 1):
        start = time.perf_counter()
        loss_sum, seen = 0.0, 0
        batches = (
            (next(iterator) for _ in range(steps_per_epoch))  # type: ignore[arg-type]
            if steps_per_epoch is not None
            else iter(data)
        )
        for batch in batches:
            loss, n = train_step(batch)
            loss_sum += float(loss) * int(n)
            seen += int(n)
        train_seconds = time.perf_counter() - start
        if seen == 0:
            raise ConfigError("train source: it yielded no examples")
        metrics = agree(validation_metrics(model, val_source, step=forward))
        if metrics["val_auc"] > best_auc:
            best_auc, best_epoch, best_weights = metrics["val_auc"], epoch, model.get_weights()
        record = {
            "epoch": epoch,
            "loss": loss_sum / seen,
            "val_loss": metrics["val_loss"],
            "val_auc": metrics["val_auc"],
            "seconds": time.perf_counter() - start,
            "examples_per_s": seen / train_seconds if train_seconds > 0 else math.nan,
            "best_epoch": best_epoch,
        }
        history.append(record)
        logger.info(
            "epoch %d: loss %.4f, val_loss %.4f, val_auc %.4f, %.1f s, %.0f examples/s",
            epoch, record["loss"], record["val_loss"], record["val_auc"], record["seconds"],
            record["examples_per_s"],
        )  # fmt: skip
        if epoch - best_epoch >= params.patience:
            logger.info("early stop after epoch %d (best %d)", epoch, best_epoch)
            break
    model.set_weights(best_weights)
    return TrainedModel(
        model=model,
        history=history,
        best_epoch=best_epoch,
        best_val_auc=float(best_auc),
        device=device,
        mixed_precision=mixed,
        n_workers=n_workers,
        weights_digests=(weights_digest(model.get_weights()),),
    )


def _n_workers(strategy: Any) -> int:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return 1
    spec = resolver.cluster_spec().as_dict()
    return max(1, len(spec.get("worker", [])) + len(spec.get("chief", [])))


def _agreement(strategy: Any) -> Callable[[dict[str, float]], dict[str, float]]:
    """A function averaging metrics over a multi-worker strategy's workers (identity otherwise).

    Made once per training (one ``tf.function``), called once per epoch on every worker.
    """
    if _n_workers(strategy) <= 1:
        return lambda metrics: metrics
    import tensorflow as tf

    @tf.function
    def mean_over_workers(values: Any) -> Any:
        local = strategy.run(tf.identity, args=(values,))
        return strategy.reduce(tf.distribute.ReduceOp.MEAN, local, axis=None)

    def agree(metrics: dict[str, float]) -> dict[str, float]:
        keys = sorted(metrics)
        values = tf.constant([metrics[k] for k in keys], dtype=tf.float64)
        mean = mean_over_workers(values).numpy()
        return {k: float(v) for k, v in zip(keys, mean, strict=True)}

    return agree


# ----------------------------------------------------------------------------- autoencoder


def train_autoencoder(
    shape: tuple[int, int],
    latent: int,
    params: CnnParams,
    train_source: BatchSource,
    val_source: BatchSource,
) -> TrainedAutoencoder:
    """Train a spectrogram autoencoder on reconstruction (mean squared) error.

    Parameters
    ----------
    shape : (int, int)
        Spectrogram shape.
    latent : int
        Latent vector length.
    params : CnnParams
        ``learning_rate``, ``batch_size``, ``epochs``, ``patience`` (on the validation loss),
        ``filters``, ``l2``, ``seed``, ``mixed_precision``.
    train_source, val_source : callable
        Batch sources with a ``spectrogram`` key (labels not needed).

    Returns
    -------
    TrainedAutoencoder
        Weights of the epoch with the lowest validation loss.
    """
    import keras
    import tensorflow as tf

    autoencoder, encoder = build_autoencoder(shape, latent, params)
    mixed = _is_mixed(autoencoder)
    optimizer: Any = keras.optimizers.Adam(params.learning_rate)
    if mixed:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    optimizer.build(autoencoder.trainable_variables)
    spec = {"spectrogram": shape}

    @tf.function(reduce_retracing=True)
    def train_step(x: Any) -> Any:
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(autoencoder(x, training=True) - x))
            if autoencoder.losses:
                loss += tf.add_n(autoencoder.losses)
            scaled = optimizer.scale_loss(loss)
        grads = tape.gradient(scaled, autoencoder.trainable_variables)
        optimizer.apply_gradients(zip(grads, autoencoder.trainable_variables, strict=True))
        return loss

    @tf.function(reduce_retracing=True)
    def squared_error(x: Any) -> Any:
        return tf.reduce_sum(tf.square(autoencoder(x, training=False) - x))

    history: list[dict[str, Any]] = []
    best_loss, best_epoch, best_weights = math.inf, 0, autoencoder.get_weights()
    for epoch in range(1, params.epochs + 1):
        start = time.perf_counter()
        loss_sum, seen = 0.0, 0
        for batch in _dataset(
            train_source, ["spectrogram"], spec, params.batch_size, labelled=False
        ):
            n = int(batch["spectrogram"].shape[0])
            loss_sum += float(train_step(batch["spectrogram"])) * n
            seen += n
        error, values = 0.0, 0
        for batch in _dataset(val_source, ["spectrogram"], spec, 256, labelled=False):
            error += float(squared_error(batch["spectrogram"]))
            values += int(np.prod(batch["spectrogram"].shape))
        if seen == 0 or values == 0:
            raise ConfigError("autoencoder: the train or validation source yielded no examples")
        val_loss = error / values
        if val_loss < best_loss:
            best_loss, best_epoch, best_weights = val_loss, epoch, autoencoder.get_weights()
        history.append(
            {
                "epoch": epoch,
                "loss": loss_sum / seen,
                "val_loss": val_loss,
                "seconds": time.perf_counter() - start,
                "best_epoch": best_epoch,
            }
        )
        if epoch - best_epoch >= params.patience:
            break
    autoencoder.set_weights(best_weights)  # the encoder shares these layers
    best = best_epoch
    logger.info("autoencoder: best val_loss %.4g at epoch %d", best_loss, best)
    return TrainedAutoencoder(autoencoder, encoder, history, best)


def encode(encoder: Any, source: BatchSource, batch_size: int = 256) -> npt.NDArray[np.float32]:
    """Latent vectors (n, latent) of every example's spectrogram, in the source's order."""
    import tensorflow as tf

    shape = _model_input_shapes(encoder)["spectrogram"]
    data = _dataset(source, ["spectrogram"], {"spectrogram": shape}, batch_size, labelled=False)

    @tf.function(reduce_retracing=True)
    def step(x: Any) -> Any:
        return encoder(x, training=False)

    parts = [np.asarray(step(batch["spectrogram"]), dtype=np.float32) for batch in data]
    latent = int(encoder.outputs[0].shape[-1])
    return np.concatenate(parts) if parts else np.zeros((0, latent), dtype=np.float32)


# ----------------------------------------------------------------------------- storage


def _model_path(url: str) -> str:
    url = str(url).rstrip("/")
    return url if url.endswith(".keras") else f"{url}/{MODEL_FILE}"


def save_model(model: Any, url: str, storage_options: Mapping[str, Any] | None = None) -> str:
    """Write ``model.keras`` under a model URL (a folder; local or ``s3://``).

    The model is saved to a local temporary file, then copied with fsspec.

    Returns
    -------
    str
        URL of the written file.
    """
    import fsspec

    target = _model_path(url)
    fs, path = fsspec.core.url_to_fs(target, **dict(storage_options or {}))
    parent = path.rsplit("/", 1)[0] if "/" in path else ""
    if parent:
        fs.makedirs(parent, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="starskope-model-") as tmp:
        local = os.path.join(tmp, MODEL_FILE)
        model.save(local)
        fs.put_file(local, path)
    logger.info("saved model to %s", target)
    return target


def load_model(url: str, storage_options: Mapping[str, Any] | None = None) -> Any:
    """Read the Keras model written by :func:`save_model` (a folder URL or the file's URL)."""
    import fsspec
    import keras

    from starskope_dask.errors import InputError

    target = _model_path(url)
    fs, path = fsspec.core.url_to_fs(target, **dict(storage_options or {}))
    if not fs.exists(path):
        raise InputError(target, "no saved model here", "train one with `starskope train`")
    with tempfile.TemporaryDirectory(prefix="starskope-model-") as tmp:
        local = os.path.join(tmp, MODEL_FILE)
        fs.get_file(path, local)
        return keras.models.load_model(local, compile=False)
