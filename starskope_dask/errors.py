"""One hierarchy for every error starskope_dask raises.

Each class also subclasses the built-in exception a caller would naturally catch (as zarr's
``NodeNotFoundError(BaseZarrError, FileNotFoundError)`` does), so ``except OSError`` keeps
working. Messages name the input, say what is wrong and what to do about it.
"""

from __future__ import annotations


class StarskopeError(Exception):
    """Base class of every error raised by starskope_dask."""


class ConfigError(StarskopeError, ValueError):
    """A configuration value is missing, of the wrong type, or out of range."""


class InputError(StarskopeError):
    """An input (a product, a catalogue) that cannot be used: its URL, what is wrong with it
    and what to do.

    Parameters
    ----------
    url : str
        The input that failed.
    problem : str
        What is wrong with it.
    hint : str, optional
        What the user can do about it.
    """

    #: Words before the URL in the message (``"stellar catalogue "``).
    what = ""

    def __init__(self, url: str, problem: str, hint: str = "") -> None:
        self.url = url
        self.problem = problem
        self.hint = hint
        message = f"{self.what}{url}: {problem}"
        if hint:
            message += f" ({hint})"
        super().__init__(message)

    def __reduce__(self) -> tuple[type[InputError], tuple[str, str, str]]:
        # Keep the error picklable so it can cross Dask worker boundaries intact.
        return (type(self), (self.url, self.problem, self.hint))


class ProductError(InputError):
    """A light-curve product could not be turned into a light curve."""


class ProductNotFoundError(ProductError, FileNotFoundError):
    """The product does not exist at its URL."""


class FetchError(ProductError, ConnectionError):
    """The product exists (or may exist) but could not be fetched: network, permissions."""


class CorruptProductError(ProductError, OSError):
    """The file is not valid FITS, or is truncated, or its table cannot be decoded."""


class UnsupportedProductError(ProductError, ValueError):
    """The file is valid FITS but not a light curve this reader understands."""


class UnsupportedSchemeError(ProductError, ValueError):
    """The URL's scheme (``ftp://``, ``gs://``, ...) is not one starskope reads."""


class NoUsableDataError(ProductError, ValueError):
    """The product reads, but has no usable cadence (all NaN, zero flux, no finite time)."""


class DiscoveryError(StarskopeError):
    """Finding products for targets failed."""


class TargetNotFoundError(DiscoveryError, LookupError):
    """A target name or ID could not be resolved, or has no products."""


class ArchiveError(DiscoveryError, ConnectionError):
    """MAST or the cloud archive could not be reached or answered with an error."""


class StoreError(StarskopeError, OSError):
    """The Zarr store cannot be opened, read or written."""


class StoreLockedError(StoreError):
    """Another ingest holds the store's lock."""


class NotAStoreError(StoreError, FileExistsError):
    """The target holds data that starskope did not write; it is refused, never touched."""


class SimulationError(StarskopeError, ValueError):
    """Simulation parameters are invalid."""


class CatalogError(InputError, ValueError):
    """A stellar catalogue table cannot be used: unreadable, or without ID or property columns."""

    what = "stellar catalogue "


class CatalogNotFoundError(CatalogError, FileNotFoundError):
    """There is no catalogue table at the URL."""


class ModelError(StarskopeError, OSError):
    """A saved model (its folder, its card ``model.json`` or its weights) is missing or damaged."""


class ModelMismatchError(InputError, ValueError):
    """Features whose schema or grid differ from the ones a model was trained on."""


class LabelError(InputError, ValueError):
    """A label source that cannot be used: unknown kind, missing columns, unparseable labels."""


def one_line(text: object, limit: int = 500) -> str:
    """``text`` (an exception or any object) on one line, at most ``limit`` characters: how
    errors are quoted inside other messages.
    """
    flat = " ".join(str(text).split())
    return flat[:limit] + ("..." if len(flat) > limit else "")
