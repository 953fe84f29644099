"""TESS FFI cutouts: ranged reads of stamps out of simulated cubes in the real cube format.

End to end: ``starskope cutout`` against a local S3 server holding a simulated archive with
two FFI cubes, on a LocalCluster of two workers; the stamps checked against the simulator's
truth (centre, aperture light curve, times), the bytes read counted at the HTTP layer, and
bad input (off every cube, a truncated cube, a crafted header, a stamp larger than the CCD).
"""

from __future__ import annotations

import dataclasses
import io
import itertools
import math
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from hypothesis import given, settings
from hypothesis import strategies as st

from starskope_dask import ffi
from starskope_dask.errors import CorruptProductError, NotAStoreError, UnsupportedProductError
from starskope_dask.simulate import SimulationConfig, simulate_archive, simulate_ffi_cube

#: Seed whose two FFI-cube stars vary far above their noise: an eclipsing binary (sector 18,
#: 30-min FFIs, 35 % deep) and a spotted star (sector 30, 10-min FFIs, 1.3 %).
SEED = 31
PREFIX = "cutout-sim"
SIZE = 11
CONFIG = SimulationConfig(
    n_stars=4,
    seed=SEED,
    missions=("tess",),
    segment_days=0.2,
    ffi_cubes=2,
    ffi_pixels=48,
    ffi_times=200,
)


@pytest.fixture(scope="module")
def archive(s3: Any) -> dict[str, Any]:
    """The simulated archive (light curves, catalogue, two FFI cubes) on the S3 server."""
    url = f"s3://{s3.bucket}/{PREFIX}"
    result = simulate_archive(url, CONFIG, storage_options=s3.storage_options(anon=False))
    assert len(result.ffi_cube_keys) == 2
    fs = _fs(s3)
    stars = pd.read_parquet(
        io.BytesIO(fs.cat_file(f"{s3.bucket}/{PREFIX}/truth/ffi_stars.parquet"))
    )
    flux = pd.read_parquet(io.BytesIO(fs.cat_file(f"{s3.bucket}/{PREFIX}/truth/ffi_flux.parquet")))
    return {"url": url, "keys": result.ffi_cube_keys, "stars": stars, "flux": flux, "s3": s3}


def _fs(s3: Any) -> Any:
    import s3fs

    return s3fs.S3FileSystem(**s3.storage_options(anon=False))


def _catalogued(archive: dict[str, Any]) -> pd.DataFrame:
    stars = archive["stars"]
    return stars[stars["kind"] == "catalogue"].reset_index(drop=True)


@pytest.fixture(scope="module")
def cli_store(archive: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``starskope cutout`` run once: both catalogued stars by TIC, a field star by position,
    and a position on no cube; two worker processes.
    """
    from starskope_dask.cli import main

    out = tmp_path_factory.mktemp("cutouts") / "stamps.zarr"
    tics = [f"TIC {tic}" for tic in _catalogued(archive)["tic"]]
    field = archive["stars"][archive["stars"]["kind"] == "field"].iloc[0]
    targets = [*tics, f"{field.ra:.7f},{field.dec:.7f}", "10,10"]
    code = main(
        [
            "cutout",
            *targets,
            "--archive",
            archive["url"],
            "--size",
            str(SIZE),
            "--out",
            str(out),
            "--workers",
            "2",
            "--json",
            "-q",
        ]
    )
    return {"code": code, "store": str(out), "targets": targets, "field": field}


@pytest.fixture(scope="module")
def stamps(cli_store: dict[str, Any]) -> Iterator[Any]:
    dataset = ffi.open_cutouts(cli_store["store"]).load()
    yield dataset


def test_cli_cuts_every_target_on_a_cube(
    cli_store: dict[str, Any], stamps: Any, capsys: Any
) -> None:
    assert cli_store["code"] == 1  # one target ("10,10") lies on no cube
    assert stamps.sizes["star"] == 3
    assert stamps.sizes["time"] == 200 and stamps.sizes["y"] == SIZE == stamps.sizes["x"]
    assert bool(stamps["ok"].all())
    assert list(stamps["target"].values) == cli_store["targets"][:3]
    failures = pd.read_parquet(Path(cli_store["store"]) / "_starskope" / "failures.parquet")
    assert list(failures["error_type"]) == ["TargetOffCubeError"]
    assert "10,10" in failures["problem"].iloc[0]


def test_stamp_is_centred_on_the_star(archive: dict[str, Any], stamps: Any) -> None:
    for i in range(3):
        image = np.nanmedian(stamps["flux"].isel(star=i).values, axis=0)
        y, x = np.unravel_index(np.nanargmax(image), image.shape)
        centre = (SIZE - 1) // 2
        assert abs(int(y) - centre) <= 1 and abs(int(x) - centre) <= 1
        assert abs(float(stamps["star_x"][i]) - centre) <= 0.5
        assert abs(float(stamps["star_y"][i]) - centre) <= 0.5
    truth = _catalogued(archive)
    for i, row in truth.iterrows():  # where the stamp says the star is: the simulator's pixel
        assert float(stamps["ccd_x"][i]) == pytest.approx(row["x"], abs=1e-3)
        assert float(stamps["ccd_y"][i]) == pytest.approx(row["y"], abs=1e-3)


def _pixel_fraction(centre: float, first: int, n: int, sigma: float) -> float:
    """Share of a pixel-integrated Gaussian PSF along one axis in pixels first..first+n-1."""
    lo, hi = first - 0.5 - centre, first + n - 0.5 - centre
    return 0.5 * (math.erf(hi / (sigma * math.sqrt(2))) - math.erf(lo / (sigma * math.sqrt(2))))


def test_aperture_light_curve_matches_the_simulated_flux(
    archive: dict[str, Any], stamps: Any
) -> None:
    """Aperture sum (5 x 5 pixels, less the sky fitted to the pixels no source reaches) against
    the truth: the star's simulated flux times its PSF's share of the aperture, plus the
    shares of any field star's light. The residuals must be the noise the stamp's own
    uncertainties predict, and the light curves as correlated as that noise allows.
    """
    sources = archive["stars"]
    for i, row in _catalogued(archive).iterrows():
        flux = stamps["flux"].isel(star=i).values.astype(np.float64)
        err = stamps["flux_err"].isel(star=i).values.astype(np.float64)
        x0, y0 = int(stamps["x0"][i]), int(stamps["y0"][i])
        here = sources[sources["key"] == row["key"]]
        light = np.zeros((SIZE, SIZE))  # every source's light in each pixel, from the truth
        for _, source in here.iterrows():
            sigma_psf = source["psf_sigma_px"]
            fx = [_pixel_fraction(source["x"], x0 + c, 1, sigma_psf) for c in range(SIZE)]
            fy = [_pixel_fraction(source["y"], y0 + r, 1, sigma_psf) for r in range(SIZE)]
            light += source["mean_flux"] * np.outer(fy, fx)
        far = light < 0.1  # e-/s: sky only
        n_far = int(far.sum())
        assert n_far >= 8
        cx, cy = round(float(stamps["star_x"][i])), round(float(stamps["star_y"][i]))
        rows, cols = slice(cy - 2, cy + 3), slice(cx - 2, cx + 3)
        # The sky is a plane fitted to those pixels (the simulated sky has a gradient), summed
        # over the aperture: a linear combination of the sky pixels, whose noise follows.
        yy, xx = np.mgrid[0:SIZE, 0:SIZE]
        design = np.column_stack([np.ones(n_far), xx[far], yy[far]])
        aperture = [25.0, float(xx[rows, cols].sum()), float(yy[rows, cols].sum())]
        weights = np.asarray(aperture) @ np.linalg.pinv(design)
        background = flux[:, far] @ weights
        measured = flux[:, rows, cols].sum(axis=(1, 2)) - background
        noise = np.sqrt(
            (err[:, rows, cols] ** 2).sum(axis=(1, 2)) + (err[:, far] ** 2) @ weights**2
        )
        truth = archive["flux"]
        truth = truth[truth["key"] == row["key"]].sort_values("cadence")["flux"].to_numpy()
        expected = np.zeros_like(truth)
        for _, source in here.iterrows():
            share = _pixel_fraction(
                source["x"], x0 + cx - 2, 5, source["psf_sigma_px"]
            ) * _pixel_fraction(source["y"], y0 + cy - 2, 5, source["psf_sigma_px"])
            expected += share * (truth if source["kind"] == "catalogue" else source["mean_flux"])
        assert abs(np.median(measured / expected) - 1) < 0.002
        pull = (measured - expected) / noise
        assert abs(np.mean(pull)) < 0.3 and 0.8 < np.std(pull) < 1.2
        signal = np.std(expected)
        best = signal / math.sqrt(signal**2 + np.mean(noise**2))  # correlation noise allows
        assert np.corrcoef(measured, truth)[0, 1] > best - 0.02
        assert best > 0.95  # the stars vary far above their noise: the check has teeth


def test_times_are_bjd_tdb_of_the_target(archive: dict[str, Any], stamps: Any) -> None:
    truth = archive["flux"]
    for i, row in _catalogued(archive).iterrows():
        times = stamps["time"].isel(star=i).values
        assert np.all(np.diff(times) > 0)
        mid = truth[truth["key"] == row["key"]].sort_values("cadence")["btjd"].to_numpy()
        # The cube's times are barycentric for the CCD's centre; the target's differ by the
        # change of the correction across a few arcminutes: well under 10 s.
        assert np.max(np.abs(times - (mid + 2457000.0))) * 86400 < 10
        assert np.ptp(times - (mid + 2457000.0)) * 86400 < 2
        assert stamps["sector"].values[i] == row["sector"]
        assert stamps.attrs["time_scale"] == "BJD_TDB days"


@pytest.mark.filterwarnings("ignore::astropy.wcs.FITSFixedWarning")
def test_stamp_equals_the_cube_read_whole(archive: dict[str, Any], stamps: Any) -> None:
    """The ranged read gives exactly the pixels astropy reads from the whole object, with
    the cube's DQUALITY; the stamp's WCS puts the target where the stamp says it is.
    """
    from astropy.wcs import WCS

    fs = _fs(archive["s3"])
    for i, key in enumerate(archive["keys"]):
        with fs.open(f"{archive['s3'].bucket}/{PREFIX}/{key}") as fh, fits.open(fh) as hdus:
            data = np.asarray(hdus[1].data)
            quality = np.asarray(hdus[2].data["DQUALITY"])
        x0, y0 = int(stamps["x0"][i]), int(stamps["y0"][i])
        whole = data[y0 : y0 + SIZE, x0 : x0 + SIZE, :, :].transpose(2, 0, 1, 3)
        np.testing.assert_array_equal(stamps["flux"].isel(star=i).values, whole[..., 0])
        np.testing.assert_array_equal(stamps["flux_err"].isel(star=i).values, whole[..., 1])
        np.testing.assert_array_equal(stamps["quality"].isel(star=i).values, quality)
        wcs = WCS(fits.Header.fromstring(str(stamps["wcs"].values[i])), relax=True)
        ra, dec = float(stamps["ra"][i]), float(stamps["dec"][i])
        x, y = wcs.all_world2pix([[ra, dec]], 0)[0]
        assert x == pytest.approx(float(stamps["star_x"][i]), abs=1e-3)
        assert y == pytest.approx(float(stamps["star_y"][i]), abs=1e-3)
        # The linear WCS at the target: CRVAL is the target, 3 pixels off it agrees with the
        # full WCS to a hundredth of a pixel.
        crval, crpix = stamps["crval"].values[i], stamps["crpix"].values[i]
        cd = stamps["cd"].values[i]
        assert crval == pytest.approx([ra, dec], abs=0.1 / 3600)
        sky = wcs.all_pix2world([[x + 3, y - 2]], 0)[0]
        xi, eta = ffi._gnomonic(sky[0], sky[1], crval[0], crval[1])
        offset = np.linalg.solve(cd, [float(xi), float(eta)])
        assert offset + crpix - 1 == pytest.approx([x + 3, y - 2], abs=0.01)


def test_bytes_read_are_about_the_stamp(
    archive: dict[str, Any], tmp_path: Path, monkeypatch: Any
) -> None:
    """Counted at the HTTP layer (anonymous S3 reads are plain range GETs): one stamp costs
    its own bytes, one request per row, plus the cubes' headers, WCS rows and one table.
    """
    from fsspec.implementations.http import HTTPFileSystem

    original = HTTPFileSystem._cat_file
    seen: list[tuple[str, int | None, int | None, int]] = []

    async def counting(self: Any, url: str, start: Any = None, end: Any = None, **kw: Any) -> Any:
        out = await original(self, url, start=start, end=end, **kw)
        seen.append((url, start, end, len(out)))
        return out

    monkeypatch.setattr(HTTPFileSystem, "_cat_file", counting)
    target = f"TIC {_catalogued(archive)['tic'].iloc[0]}"
    config = ffi.CutoutConfig(
        targets=(target,), store=str(tmp_path / "one.zarr"), archive=archive["url"], size=SIZE
    )
    summary = ffi.run_cutouts(config)
    assert summary.n_stamps == 1 and summary.n_failed == 0
    cube_reads = [s for s in seen if "/tess/public/mast/" in s[0]]
    total = sum(s[3] for s in cube_reads)
    assert total == summary.bytes_probe + summary.bytes_table + summary.bytes_stamps
    stamp_bytes = SIZE * SIZE * 200 * 2 * 4
    assert summary.bytes_stamps == stamp_bytes
    fs = _fs(archive["s3"])
    sizes = [fs.size(f"{archive['s3'].bucket}/{PREFIX}/{key}") for key in archive["keys"]]
    table = 200 * 500  # rows of about 450 bytes
    assert total < stamp_bytes + table + 2 * 40_000
    assert total < 0.1 * sum(sizes)
    key = archive["keys"][0]
    data_reads = [s for s in cube_reads if key in s[0] and (s[2] or 0) - (s[1] or 0) == SIZE * 1600]
    assert len(data_reads) == SIZE  # one GET per stamp row


# ------------------------------------------------------------------------ bad input


@pytest.fixture(scope="module")
def bad_archive(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A local archive: one good cube, and cubes that are truncated, crafted, not a cube and
    not FITS, under the real key layout.
    """
    root = tmp_path_factory.mktemp("bad-archive")
    config = SimulationConfig(n_stars=2, seed=SEED, missions=("tess",))
    cube = simulate_ffi_cube(str(root), config, 0, sector=1, n_rows=32, n_cols=40, n_times=30)
    good = (root / cube.key).read_bytes()
    folder = root / ffi.CUBE_PREFIX
    (folder / "tess-s0002-1-1-cube.fits").write_bytes(good[: len(good) // 2])
    at = good.index(b"NAXIS3  =")
    crafted = good[:at] + f"{'NAXIS3':8}= {10**15:>20}".ljust(80).encode() + good[at + 80 :]
    (folder / "tess-s0003-1-1-cube.fits").write_bytes(crafted)
    light_curve = io.BytesIO()
    fits.HDUList(
        [fits.PrimaryHDU(), fits.BinTableHDU.from_columns([fits.Column("TIME", "D", array=[1.0])])]
    ).writeto(light_curve)
    (folder / "tess-s0004-1-1-cube.fits").write_bytes(light_curve.getvalue())
    (folder / "tess-s0005-1-1-cube.fits").write_bytes(b"not a FITS file" * 300)
    star = cube.stars.iloc[0]
    return {
        "root": str(root),
        "star": star,
        "good": cube,
        "crafted": str(folder / "tess-s0003-1-1-cube.fits"),
    }


def test_bad_cubes_and_targets_are_recorded_and_the_run_goes_on(
    bad_archive: dict[str, Any], tmp_path: Path
) -> None:
    star = bad_archive["star"]
    config = ffi.CutoutConfig(
        targets=(f"{star.ra},{star.dec}", "10,10"),
        store=str(tmp_path / "stamps.zarr"),
        archive=bad_archive["root"],
        size=7,
    )
    summary = ffi.run_cutouts(config)
    assert summary.n_stamps == 1 and summary.n_cubes == 1
    by_cube = {f["cube"].rsplit("/", 1)[-1]: f for f in summary.failures if f["cube"]}
    assert by_cube["tess-s0002-1-1-cube.fits"]["error_type"] == "CorruptProductError"
    assert "truncated" in by_cube["tess-s0002-1-1-cube.fits"]["problem"]
    assert by_cube["tess-s0003-1-1-cube.fits"]["error_type"] == "CorruptProductError"
    assert "NAXIS3" in by_cube["tess-s0003-1-1-cube.fits"]["problem"]
    assert by_cube["tess-s0004-1-1-cube.fits"]["error_type"] == "UnsupportedProductError"
    assert by_cube["tess-s0005-1-1-cube.fits"]["error_type"] == "CorruptProductError"
    assert all(name in f["problem"] for name, f in by_cube.items())  # each names its cube
    off = [f for f in summary.failures if f["target"] == "10,10"]
    assert [f["error_type"] for f in off] == ["TargetOffCubeError"]
    dataset = ffi.open_cutouts(config.store)
    assert bool(dataset["ok"].all()) and dataset.sizes["star"] == 1


def test_a_store_is_rewritten_but_a_foreign_folder_is_refused(
    bad_archive: dict[str, Any], tmp_path: Path
) -> None:
    star = bad_archive["star"]
    config = ffi.CutoutConfig(
        targets=(f"{star.ra},{star.dec}",),
        store=str(tmp_path / "again.zarr"),
        archive=bad_archive["root"],
        sectors=(1,),
        size=5,
    )
    assert ffi.run_cutouts(config).n_stamps == 1
    again = ffi.run_cutouts(dataclasses.replace(config, size=7))  # a rerun replaces the stamps
    assert again.n_stamps == 1 and ffi.open_cutouts(config.store).sizes["x"] == 7
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(NotAStoreError, match="not empty"):
        ffi.run_cutouts(dataclasses.replace(config, store=str(foreign)))
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]


def test_a_stamp_larger_than_the_ccd_is_refused_per_target(
    bad_archive: dict[str, Any], tmp_path: Path
) -> None:
    star = bad_archive["star"]
    config = ffi.CutoutConfig(
        targets=(f"{star.ra},{star.dec}",),
        store=str(tmp_path / "big.zarr"),
        archive=bad_archive["root"],
        sectors=(1,),
        size=33,  # the cube is 40 columns by 32 rows
    )
    summary = ffi.run_cutouts(config)
    assert summary.n_stamps == 0
    assert [f["error_type"] for f in summary.failures] == ["StampSizeError"]
    assert "larger than the CCD (40 x 32)" in summary.failures[0]["problem"]


def test_a_crafted_header_is_refused_without_allocating(bad_archive: dict[str, Any]) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(CorruptProductError, match="NAXIS3"):
            ffi.probe_cube(bad_archive["crafted"])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000


def test_a_tica_cube_and_a_non_cube_are_unsupported() -> None:
    header = fits.Header()
    image = fits.ImageHDU(data=np.zeros((2, 3, 4, 1), np.float32))
    buffer = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(header=header), image]).writeto(buffer)
    data = buffer.getvalue()
    with pytest.raises(UnsupportedProductError, match="TICA"):
        ffi.parse_cube_head("tica.fits", data, len(data))
    with pytest.raises(CorruptProductError, match="not a FITS file"):
        ffi.parse_cube_head("junk", b"junk" * 1000, 4000)
    assert ffi.parse_cube_head("short", data[:2880], len(data)) is None  # read more


def test_stamp_window_stays_on_the_ccd() -> None:
    edge = ffi.stamp_window(0.2, 30.0, 11, 40, 32)
    assert (edge.x0, edge.y0) == (0, 21) and edge.shifted
    assert edge.star_x == pytest.approx(0.2) and edge.star_y == pytest.approx(9.0)
    centred = ffi.stamp_window(20.4, 15.6, 11, 40, 32)
    assert (centred.x0, centred.y0) == (15, 11) and not centred.shifted
    with pytest.raises(ffi.StampSizeError):
        ffi.stamp_window(5, 5, 0, 40, 32)


def test_parse_sectors() -> None:
    assert ffi.parse_sectors("1,2,5-7") == (1, 2, 5, 6, 7)
    assert ffi.parse_sectors(None) == ()
    with pytest.raises(ffi.ConfigError):
        ffi.parse_sectors("1,x")


# -------------------------------------------------------------------- the arithmetic


@settings(max_examples=150, deadline=None)
@given(
    n_rows=st.integers(1, 9),
    n_cols=st.integers(1, 9),
    n_times=st.integers(1, 4),
    offset=st.integers(0, 64),
    fx=st.floats(0, 1, allow_nan=False),
    fy=st.floats(0, 1, allow_nan=False),
    size=st.integers(1, 9),
)
def test_stamp_byte_ranges_match_numpy_slicing(
    n_rows: int, n_cols: int, n_times: int, offset: int, fx: float, fy: float, size: int
) -> None:
    size = min(size, n_rows, n_cols)
    cube = np.arange(n_rows * n_cols * n_times * 2, dtype=">f4").reshape(n_rows, n_cols, n_times, 2)
    blob = b"\xff" * offset + cube.tobytes() + b"\xee" * 7
    geometry = ffi.CubeGeometry("mem", len(blob), n_rows, n_cols, n_times, 2, offset, len(blob))
    x, y = fx * (n_cols - 1), fy * (n_rows - 1)
    stamp = ffi.stamp_window(x, y, size, n_cols, n_rows)
    assert 0 <= stamp.x0 <= n_cols - size and 0 <= stamp.y0 <= n_rows - size
    assert stamp.x0 <= math.floor(x + 0.5) < stamp.x0 + size  # the star's pixel is in it
    ranges = ffi.stamp_ranges(geometry, stamp)
    assert len(ranges) <= size
    assert sum(end - start for start, end in ranges) == size * size * n_times * 2 * 4
    assert all(a[1] < b[0] for a, b in itertools.pairwise(ranges))  # disjoint, sorted
    flux, err = ffi.decode_stamp(geometry, stamp, [blob[s:e] for s, e in ranges])
    window = cube[stamp.y0 : stamp.y0 + size, stamp.x0 : stamp.x0 + size]
    np.testing.assert_array_equal(flux, window[..., 0].transpose(2, 0, 1))
    np.testing.assert_array_equal(err, window[..., 1].transpose(2, 0, 1))
