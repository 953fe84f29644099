"""Labels: the simulator's truth, the NASA Exoplanet Archive tables, label tables."""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from starskope_dask.errors import ConfigError, LabelError
from starskope_dask.train.labels import (
    LABEL_CLASSES,
    LABEL_COLUMNS,
    LabelReport,
    Labels,
    LabelSourceError,
    LabelSourceNotFoundError,
    load_labels,
    parse_label_source,
    read_table,
)

from .conftest import serve_folder

EXAMPLE_COLUMNS = ("star", "signal", "kic", "epic", "tic", "ra", "dec", "period")


def examples_table(rows: Sequence[tuple[Any, ...]]) -> pd.DataFrame:
    """An examples table as dataset.load_examples gives: IDs Int64 (NA none)."""
    frame = pd.DataFrame(list(rows), columns=list(EXAMPLE_COLUMNS))
    for name in ("kic", "epic", "tic"):
        frame[name] = frame[name].astype("Int64")
    frame["star"] = frame["star"].astype(np.int64)
    frame["signal"] = frame["signal"].astype(np.int64)
    frame["period"] = frame["period"].astype(np.float64)
    frame["snr"] = 12.0
    frame["sde"] = 15.0
    return frame


def truth_row(index: int, label: str, period: float, **ids: int | None) -> dict[str, Any]:
    return {
        "index": index,
        "home": "kepler",
        "ra": 290.0,
        "dec": 45.0,
        "kic": ids.get("kic"),
        "epic": ids.get("epic"),
        "tic": ids.get("tic"),
        "label": label,
        "period": period,
        "epoch": 2454950.0,
        "duration_hours": 3.0 if label != "none" else 0.0,
        "depth_ppm": 900.0 if label != "none" else 0.0,
        "expected_snr": 40.0 + index if label != "none" else 0.0,
    }


def write_truth(root: Path, rows: list[dict[str, Any]]) -> Path:
    path = root / "truth" / "stars.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(path, index=False)
    return path


def labels_of(labels: Labels) -> dict[tuple[int, int], str]:
    return {
        (int(r.star), int(r.signal)): str(r.label) for r in labels.table.itertuples(index=False)
    }


# ------------------------------------------------------------------------- the source text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("truth:/data/sim", ("truth", "/data/sim")),
        ("TRUTH:s3://bucket/sim", ("truth", "s3://bucket/sim")),
        ("koi:catalogs/koi_cumulative.csv", ("koi", "catalogs/koi_cumulative.csv")),
        ("toi: toi.csv", ("toi", "toi.csv")),
        ("k2:https://host/k2.csv", ("k2", "https://host/k2.csv")),
        ("csv:labels.parquet", ("csv", "labels.parquet")),
        ("labels.csv", ("csv", "labels.csv")),
        ("s3://bucket/labels.csv", ("csv", "s3://bucket/labels.csv")),
        ("file:///tmp/labels.csv", ("csv", "file:///tmp/labels.csv")),
    ],
)
def test_parse_label_source(text: str, expected: tuple[str, str]) -> None:
    assert parse_label_source(text) == expected


@pytest.mark.parametrize("text", ["kepler:koi.csv", "ftp://host/labels.csv", "", "   ", "koi:"])
def test_parse_label_source_rejects(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_label_source(text)
    assert isinstance(info.value, LabelError)
    if text.strip() and text != "koi:":
        assert "truth:, koi:, toi:, k2:, csv:" in str(info.value)
        assert repr(text) in str(info.value)


# ---------------------------------------------------------------------------- truth


@pytest.fixture
def truth_archive(tmp_path: Path) -> Path:
    rows = [
        truth_row(0, "planet", 3.0, kic=757000),
        truth_row(1, "eb", 2.0, epic=207000001),
        truth_row(2, "none", math.nan, tic=10015838),
        truth_row(3, "planet", 4.0, kic=760027, tic=10023757),  # Kepler + TESS
        truth_row(4, "planet", 5.0, kic=763054),  # detected at 3P only
        truth_row(5, "planet", 7.0, tic=10039595),  # no signal near 7 d
        truth_row(6, "planet", 1.5, kic=999999),  # not in the features
    ]
    write_truth(tmp_path / "sim", rows)
    return tmp_path / "sim"


TRUTH_EXAMPLES = [
    # star, signal, kic, epic, tic, ra, dec, period
    (10, 0, 757000, None, None, 290.0, 45.0, 3.01),  # planet at P
    (10, 1, 757000, None, None, 290.0, 45.0, 5.997),  # planet at 2P
    (10, 2, 757000, None, None, 290.0, 45.0, 1.37),  # false alarm
    (11, 0, None, 207000001, None, 170.0, 0.0, 1.0),  # EB at P/2
    (11, 1, None, 207000001, None, 170.0, 0.0, 2.0),  # EB at P
    (12, 0, None, None, 10015838, 10.0, -30.0, 0.9),  # quiet star: rotation alias
    (13, 0, None, None, 10023757, 291.0, 44.0, 4.0),  # joined by TIC alone
    (14, 0, 763054, None, None, 292.0, 46.0, 15.0),  # 3P: ambiguous
    (14, 1, 763054, None, None, 292.0, 46.0, 0.61),  # false alarm
    (15, 0, None, None, 10039595, 20.0, 10.0, 2.2),  # planet missed
    (16, 0, 123456, None, None, 280.0, 40.0, 3.3),  # not in the truth
]


def test_truth_labels_with_harmonics(truth_archive: Path) -> None:
    examples = examples_table(TRUTH_EXAMPLES)
    labels = load_labels(f"truth:{truth_archive}", examples)
    assert labels_of(labels) == {
        (10, 0): "planet",
        (10, 1): "planet",
        (10, 2): "none",
        (11, 0): "eb",
        (11, 1): "eb",
        (12, 0): "none",
        (13, 0): "planet",
        (14, 1): "none",
        (15, 0): "none",
    }
    table = labels.table.set_index(["star", "signal"])
    assert tuple(labels.table.columns) == LABEL_COLUMNS
    assert tuple(load_labels(f"truth:{truth_archive}", examples.iloc[:0]).table) == LABEL_COLUMNS
    assert labels.table["target"].dtype == np.int8
    assert labels.table["truth_snr"].dtype == np.float64
    assert table.loc[(10, 1), "target"] == 1 and table.loc[(11, 0), "target"] == 0
    assert table.loc[(10, 1), "truth_snr"] == 40.0
    assert table.loc[(10, 1), "matched_period"] == 3.0
    assert table.loc[(11, 0), "matched_period"] == 2.0
    assert math.isnan(table.loc[(10, 2), "truth_snr"])
    assert math.isnan(table.loc[(10, 2), "matched_period"])
    assert set(labels.table["label"]) <= set(LABEL_CLASSES)
    report = labels.report
    assert report.n_rows == 7
    assert report.n_labelled == 9 and report.n_positive == 3
    assert report.ids_not_in_features == ("truth star 6 (KIC 999999)",)
    assert report.stars_without_match == (14, 15)  # 14: only an ambiguous harmonic
    assert report.n_unlabelled_signals == 1  # star 14's 3P detection
    assert report.conflicts == ()
    assert 16 not in set(labels.table["star"])  # never labelled, never trained on


def test_truth_accepts_root_or_parquet_and_tolerance(truth_archive: Path) -> None:
    examples = examples_table(TRUTH_EXAMPLES)
    by_root = load_labels(f"truth:{truth_archive}/", examples)
    by_file = load_labels(f"truth:{truth_archive / 'truth' / 'stars.parquet'}", examples)
    pd.testing.assert_frame_equal(by_root.table, by_file.table)
    strict = load_labels(f"truth:{truth_archive}", examples, period_tolerance=0.001)
    # 3.01 vs 3.0 is 0.3% off: now a false alarm
    assert labels_of(strict)[(10, 0)] == "none"
    for bad in (0, -0.01, 0.5, math.nan, "x"):
        with pytest.raises(ConfigError, match="period_tolerance"):
            load_labels(f"truth:{truth_archive}", examples, period_tolerance=bad)  # type: ignore[arg-type]


def test_truth_id_mismatch_is_reported(tmp_path: Path) -> None:
    rows = [
        truth_row(0, "planet", 3.0, kic=757000, tic=10000000),
        truth_row(1, "none", math.nan, tic=10007919),
    ]
    root = tmp_path / "sim"
    write_truth(root, rows)
    # the features joined KIC 757000 to TIC 10007919: two stars in one row
    examples = examples_table(
        [
            (0, 0, 757000, None, 10007919, 290.0, 45.0, 3.0),
            (1, 0, None, None, 10000000, 290.0, 45.0, 3.0),
        ]
    )
    labels = load_labels(f"truth:{root}", examples)
    assert labels_of(labels) == {(1, 0): "planet"}
    (conflict,) = labels.report.conflicts
    assert "features star 0 (KIC 757000/TIC 10007919)" in conflict
    assert "truth star 0 (KIC 757000/TIC 10000000) whose TIC is 10000000" in conflict
    assert labels.report.ids_not_in_features == ()


def test_truth_as_the_simulator_writes_it(tmp_path: Path) -> None:
    """The truth rows the simulator writes (its SimStar fields, IDs None as NaN)."""
    from starskope_dask.simulate import SimulationConfig, expected_snr, make_star

    config = SimulationConfig(n_stars=40, seed=5, max_segments=1)
    stars = [make_star(config, i) for i in range(config.n_stars)]
    rows = []
    for star in stars:
        row = dataclasses.asdict(star)
        row["expected_snr"] = expected_snr(star, config)
        for key in ("kepler_quarters", "k2_campaigns", "tess_sectors"):
            row[key] = ",".join(str(v) for v in row[key])
        rows.append(row)
    write_truth(tmp_path / "sim", rows)
    examples = []
    for star in stars:
        period = {"planet": star.period, "eb": star.period / 2}.get(star.label, 1.234)
        examples.append((star.index, 0, star.kic, star.epic, star.tic, star.ra, star.dec, period))
    labels = load_labels(f"truth:{tmp_path / 'sim'}", examples_table(examples))
    got = labels.table.set_index("star")["label"].to_dict()
    assert got == {star.index: star.label for star in stars}
    assert labels.report.n_positive == sum(star.label == "planet" for star in stars) > 0
    planets = labels.table[labels.table["label"] == "planet"]
    assert (planets["truth_snr"] > 0).all()


# ----------------------------------------------------------------------- label tables


LABEL_EXAMPLES = [
    (0, 0, 100, None, None, 1.0, 1.0, 3.0),
    (0, 1, 100, None, None, 1.0, 1.0, 1.5),
    (1, 0, 200, None, None, 2.0, 2.0, 5.0),
    (1, 1, 200, None, None, 2.0, 2.0, 7.0),
    (2, 0, None, 201000001, None, 3.0, 3.0, 2.0),
    (3, 0, None, None, 30000001, 4.0, 4.0, 9.0),
    (3, 1, None, None, 30000001, 4.0, 4.0, 11.0),
    (4, 0, 400, None, None, 5.0, 5.0, 4.0),
]


def test_csv_star_level_labels(tmp_path: Path) -> None:
    """Without a period: none applies to every signal, planet/eb/fp to signal 0 only."""
    path = tmp_path / "labels.csv"
    path.write_text(
        "kic,epic,tic,label\n100,,,planet\n200,,,0\n,201000001,,EB\n,,30000001,false\n999,,,True\n"
    )
    labels = load_labels(str(path), examples_table(LABEL_EXAMPLES))
    assert labels_of(labels) == {
        (0, 0): "planet",
        (1, 0): "none",
        (1, 1): "none",
        (2, 0): "eb",
        (3, 0): "none",
        (3, 1): "none",
    }
    assert labels.report.ids_not_in_features == ("KIC 999",)
    assert labels.report.n_positive == 1
    assert labels.table["matched_period"].isna().all()


def test_csv_by_period_and_star_index(tmp_path: Path) -> None:
    path = tmp_path / "labels.parquet"
    pd.DataFrame(
        {
            "star": [0, 0, 1, 4, 4],
            "label": ["planet", "fp", "planet", "planet", "none"],
            "period": [3.0, 1.5, 6.0, 4.01, None],
            "truth_snr": [25.0, 8.0, 9.0, 11.0, None],
        }
    ).to_parquet(path)
    labels = load_labels(f"csv:{path}", examples_table(LABEL_EXAMPLES))
    got = labels_of(labels)
    assert got == {(0, 0): "planet", (0, 1): "fp"}
    table = labels.table.set_index(["star", "signal"])
    assert table.loc[(0, 0), "truth_snr"] == 25.0
    assert table.loc[(0, 1), "matched_period"] == 1.5
    # star 1: no signal at 6 d; star 4: a star-level none and a planet at its signal 0
    assert labels.report.stars_without_match == (1,)
    assert len(labels.report.conflicts) == 1
    assert "features star 4 signal 0" in labels.report.conflicts[0]
    assert "planet" in labels.report.conflicts[0] and "none" in labels.report.conflicts[0]
    assert labels.report.n_unlabelled_signals == 2  # star 1's two signals


def test_duplicate_conflicting_labels_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text("kic,label\n100,planet\n100,fp\n100,planet\n200,none\n200,none\n")
    labels = load_labels(f"csv:{path}", examples_table(LABEL_EXAMPLES))
    assert labels_of(labels) == {(1, 0): "none", (1, 1): "none"}
    assert len(labels.report.conflicts) == 1
    assert "features star 0 signal 0" in labels.report.conflicts[0]


def test_bad_values_are_skipped_and_reported(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text(
        "kic,label,period\n"
        "100,planet,3.0\n"
        "-7,planet,3.0\n"
        "200,planet,inf\n"
        "200,planet,-5\n"
        "200,planet,abc\n"
        "12.5,eb,1.0\n"
        ",planet,\n"
        "400,,4.0\n"
    )
    labels = load_labels(f"csv:{path}", examples_table(LABEL_EXAMPLES))
    assert labels_of(labels) == {(0, 0): "planet"}
    skipped = labels.report.skipped_rows
    assert skipped == (
        "row 2 (kic -7.0): an ID is not a non-negative integer",
        "row 3 (KIC 200): period 'inf' is not a positive finite number of days",
        "row 4 (KIC 200): period '-5' is not a positive finite number of days",
        "row 5 (KIC 200): period 'abc' is not a positive finite number of days",
        "row 6 (kic 12.5): an ID is not a non-negative integer",
        "row 7 (no ID): no ID",
        "row 8 (KIC 400): no label",
    )


def test_label_source_errors_name_the_file(tmp_path: Path) -> None:
    examples = examples_table(LABEL_EXAMPLES)
    missing = tmp_path / "nowhere.csv"
    with pytest.raises(LabelSourceNotFoundError, match=r"nowhere\.csv") as info:
        load_labels(f"koi:{missing}", examples)
    assert isinstance(info.value, FileNotFoundError)
    assert isinstance(info.value, LabelError)
    with pytest.raises(LabelSourceNotFoundError, match=r"truth/stars\.parquet"):
        load_labels(f"truth:{tmp_path}", examples)
    with pytest.raises(LabelSourceError, match="is a folder"):
        load_labels(f"csv:{tmp_path}", examples)

    no_columns = tmp_path / "koi.csv"
    no_columns.write_text("# comment\nkepid,koi_period\n100,3.0\n")
    with pytest.raises(LabelSourceError, match=r"koi\.csv.*koi_disposition") as error:
        load_labels(f"koi:{no_columns}", examples)
    assert str(error.value).startswith("label source ")

    no_label = tmp_path / "nolabel.csv"
    no_label.write_text("kic,class\n100,planet\n")
    with pytest.raises(LabelSourceError, match=r"nolabel\.csv: has no label column"):
        load_labels(str(no_label), examples)
    no_id = tmp_path / "noid.csv"
    no_id.write_text("name,label\nx,planet\n")
    with pytest.raises(LabelSourceError, match="no ID column"):
        load_labels(str(no_id), examples)

    words = tmp_path / "words.csv"
    words.write_text("kic,label\n100,planet\n200,maybe\n300,PC?\n")
    with pytest.raises(LabelSourceError, match=r"words\.csv") as unparsed:
        load_labels(str(words), examples)
    assert "row 2: 'maybe'" in str(unparsed.value) and "row 3: 'PC?'" in str(unparsed.value)

    disposition = tmp_path / "toi.csv"
    disposition.write_text("tid,tfopwg_disp,pl_orbper\n30000001,PC,9.0\n30000001,XX,11.0\n")
    with pytest.raises(LabelSourceError, match=r"tfopwg_disp.*row 2: 'XX'"):
        load_labels(f"toi:{disposition}", examples)

    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"PAR1 not really")
    with pytest.raises(LabelSourceError, match=r"garbage\.parquet: cannot be read as Parquet"):
        load_labels(str(garbage), examples)

    with pytest.raises(ConfigError, match="period"):
        load_labels(str(words), examples.drop(columns="period"))


def test_label_table_over_http(tmp_path: Path) -> None:
    (tmp_path / "labels.csv").write_text("tic,label,period\n30000001,planet,11.0\n")
    with serve_folder(tmp_path) as base:
        labels = load_labels(f"csv:{base}/labels.csv", examples_table(LABEL_EXAMPLES))
        with pytest.raises(LabelSourceNotFoundError, match=r"absent\.csv"):
            load_labels(f"{base}/absent.csv", examples_table(LABEL_EXAMPLES))
    assert labels_of(labels) == {(3, 1): "planet"}


# --------------------------------------------------------------- catalogue tables (small)

KOI_HEADER = (
    "# This file was produced by the NASA Exoplanet Archive\n"
    "# COLUMN kepid: KepID\n"
    "kepid,kepoi_name,koi_disposition,koi_fpflag_ss,koi_fpflag_co,koi_period,koi_model_snr,"
    "note\n"
)


def test_koi_dispositions(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "koi.csv"
    path.write_text(
        KOI_HEADER
        + "100,K00001.01,CONFIRMED,1,0,3.0,500.0,hot Jupiter with a secondary\n"
        + "100,K00001.02,CANDIDATE,0,0,1.5,12.0,\n"
        + "200,K00002.01,FALSE POSITIVE,1,0,5.0,80.0,Mo&#x10D;nik #1\n"
        + "200,K00002.02,FALSE POSITIVE,0,1,7.0,9.0,\n"
        + "400,K00004.01,CONFIRMED,0,0,8.0,20.0,\n"
        + "500,K00005.01,CONFIRMED,0,0,2.0,20.0,\n"
    )
    examples = examples_table([*LABEL_EXAMPLES, (4, 1, 400, None, None, 5.0, 5.0, 2.0)])
    with caplog.at_level(logging.INFO, logger="starskope_dask.train.labels"):
        labels = load_labels(f"koi:{path}", examples)
    assert labels_of(labels) == {(0, 0): "planet", (0, 1): "planet", (1, 0): "eb", (1, 1): "fp"}
    assert labels.table.set_index(["star", "signal"]).loc[(1, 0), "truth_snr"] == 80.0
    report = labels.report
    assert report.n_rows == 6
    assert report.ids_not_in_features == ("KIC 500",)
    assert report.stars_without_match == (4,)  # 8 d planet; signals at 4 and 2 d
    assert report.n_unlabelled_signals == 2  # not trained on: they match no KOI
    assert "1 catalogue objects have no star" in caplog.text and "KIC 500" in caplog.text


def test_toi_dispositions(tmp_path: Path) -> None:
    path = tmp_path / "toi.csv"
    path.write_text(
        "# TOI\n"
        "toi,tid,tfopwg_disp,pl_orbper\n"
        "101.01,30000001,KP,9.0\n"
        "101.02,30000001,FA,11.0\n"
        "102.01,40000000,FP,4.0\n"
        "103.01,30000001,PC,\n"
    )
    labels = load_labels(f"toi:{path}", examples_table(LABEL_EXAMPLES))
    assert labels_of(labels) == {(3, 0): "planet", (3, 1): "none"}
    assert labels.report.ids_not_in_features == ("TIC 40000000",)
    assert labels.report.skipped_rows == (
        "row 4 (TIC 30000001 TOI 103.01): period nan is not a positive finite number of days",
    )


def test_k2_by_epic_name_and_by_position(tmp_path: Path) -> None:
    path = tmp_path / "k2.csv"
    path.write_text(
        "pl_name,hostname,default_flag,pl_orbper,ra,dec\n"
        "EPIC 201000001 b,EPIC 201000001,0,2.5,3.0,3.0\n"
        "EPIC 201000001 b,EPIC 201000001,1,2.0,3.0,3.0\n"
        "K2-900 b,K2-900,1,9.0,4.0004,4.0003\n"  # 1.8" from star 3
        "K2-900 c,K2-900,1,11.0,4.0004,4.0003\n"
        "K2-901 b,K2-901,1,5.0,2.0,2.01\n"  # 36" from star 1: too far
    )
    labels = load_labels(f"k2:{path}", examples_table(LABEL_EXAMPLES))
    assert labels_of(labels) == {(2, 0): "planet", (3, 0): "planet", (3, 1): "planet"}
    assert labels.report.n_rows == 5
    assert labels.report.ids_not_in_features == ("K2-901",)


# ----------------------------------------------------------------- the real catalogues

# Real stars of ../shared/data/real (README): IDs, published periods (d), header positions.
KEPLER_10 = 11904151  # Kepler-10 b 0.8375, c 45.294
HAT_P_7 = {"kic": 10666592, "tic": 424865156, "ra": 292.24728, "dec": 47.969519}
TESS_HOSTS = {  # TIC: period of the known planet
    25155310: 3.2888,  # WASP-126 b
    38846515: 2.8494,  # WASP-100 b
    149603524: 4.4119,  # WASP-62 b
    231663901: 1.4304,  # WASP-46 b
    231670397: 4.0873,  # WASP-73 b
    281459670: 3.1744,  # TOI-110
}
K2_3 = {"epic": 201367065, "ra": 172.334955, "dec": -1.454787}  # FITS RA_OBJ/DEC_OBJ
NO_PLANET_KIC = 2556081
NO_PLANET_TIC = 358108509


@pytest.fixture(scope="module")
def real_catalogs(real_data: Path) -> Path:
    """The NASA Exoplanet Archive tables of the real data folder (skips when absent)."""
    folder = real_data / "catalogs"
    if not (folder / "koi_cumulative.csv").exists():
        pytest.skip(f"{folder} holds no koi_cumulative.csv")
    return folder


@pytest.fixture(scope="module")
def real_examples() -> pd.DataFrame:
    rows: list[tuple[Any, ...]] = [
        (0, 0, KEPLER_10, None, None, 285.679, 50.241, 0.8375),
        (0, 1, KEPLER_10, None, None, 285.679, 50.241, 45.294),
        (0, 2, KEPLER_10, None, None, 285.679, 50.241, 1.675),  # 2P: no KOI there
        (1, 0, HAT_P_7["kic"], None, HAT_P_7["tic"], HAT_P_7["ra"], HAT_P_7["dec"], 2.2047),
        (2, 0, NO_PLANET_KIC, None, None, 291.0, 37.8, 3.1),
        (3, 0, None, K2_3["epic"], None, K2_3["ra"], K2_3["dec"], 10.055),
        (3, 1, None, K2_3["epic"], None, K2_3["ra"], K2_3["dec"], 24.646),
        (3, 2, None, K2_3["epic"], None, K2_3["ra"], K2_3["dec"], 44.558),
        (4, 0, None, None, NO_PLANET_TIC, 100.0, -60.0, 2.0),
    ]
    for i, (tic, period) in enumerate(TESS_HOSTS.items()):
        rows.append((10 + i, 0, None, None, tic, 60.0 + i, -70.0, period))
    return examples_table(rows)


def test_real_koi_labels_kepler_hosts(real_catalogs: Path, real_examples: pd.DataFrame) -> None:
    labels = load_labels(f"koi:{real_catalogs / 'koi_cumulative.csv'}", real_examples)
    got = labels_of(labels)
    # HAT-P-7 b is CONFIRMED with koi_fpflag_ss set (its secondary eclipse): still a planet
    assert got == {(0, 0): "planet", (0, 1): "planet", (1, 0): "planet"}
    assert labels.report.n_unlabelled_signals == 1  # Kepler-10 at 2P
    assert labels.report.n_rows > 9000
    assert f"KIC {NO_PLANET_KIC}" not in labels.report.ids_not_in_features
    assert len(labels.report.ids_not_in_features) > 8000
    assert (labels.table["truth_snr"] > 100).all()  # koi_model_snr of bright hosts


def test_real_koi_false_positive_eclipsing_binary(real_catalogs: Path) -> None:
    koi = pd.read_csv(real_catalogs / "koi_cumulative.csv", comment="#")
    ebs = koi[(koi["koi_disposition"] == "FALSE POSITIVE") & (koi["koi_fpflag_ss"] == 1)]
    ebs = ebs[~ebs["kepid"].duplicated(keep=False)].head(3)
    examples = examples_table(
        [
            (i, 0, int(r.kepid), None, None, r.ra, r.dec, r.koi_period)
            for i, r in enumerate(ebs.itertuples())
        ]
    )
    labels = load_labels(f"koi:{real_catalogs / 'koi_cumulative.csv'}", examples)
    assert set(labels.table["label"]) == {"eb"} and len(labels.table) == 3
    assert labels.report.n_positive == 0


def test_real_toi_labels_wasp_hosts(real_catalogs: Path, real_examples: pd.DataFrame) -> None:
    labels = load_labels(f"toi:{real_catalogs / 'toi.csv'}", real_examples)
    got = labels_of(labels)
    expected = {(10 + i, 0): "planet" for i in range(len(TESS_HOSTS))}
    expected[(1, 0)] = "planet"  # HAT-P-7 b is TOI 1265.01 (KP) on its TIC
    assert got == expected
    assert all(
        s.endswith("not a positive finite number of days") for s in labels.report.skipped_rows
    )  # single-transit TOIs have no period


def test_real_k2_labels_k2_3(real_catalogs: Path, real_examples: pd.DataFrame) -> None:
    """K2-3 has no EPIC in the table: joined by position (1.95" from its EPIC position)."""
    labels = load_labels(f"k2:{real_catalogs / 'planetary_systems_k2.csv'}", real_examples)
    assert labels_of(labels) == {(3, 0): "planet", (3, 1): "planet", (3, 2): "planet"}
    table = labels.table.set_index(["star", "signal"])
    assert table.loc[(3, 0), "matched_period"] == pytest.approx(10.055, rel=1e-3)
    assert "K2-3" not in labels.report.ids_not_in_features
    assert "K2-18" in labels.report.ids_not_in_features
    assert labels.report.conflicts == ()


def test_real_k2_epic_named_host(real_catalogs: Path) -> None:
    k2 = read_table(str(real_catalogs / "planetary_systems_k2.csv"))
    # a '#' inside a row (an HTML entity in a reference) is data, not a comment
    wasp_85 = k2[k2["pl_name"] == "WASP-85 A b"]
    assert len(wasp_85) and wasp_85["pl_orbper"].notna().all()
    host = k2[(k2["hostname"] == "EPIC 201238110") & (k2["default_flag"] == 1)].iloc[0]
    examples = examples_table([(0, 0, None, 201238110, None, math.nan, math.nan, host.pl_orbper)])
    labels = load_labels(f"k2:{real_catalogs / 'planetary_systems_k2.csv'}", examples)
    assert labels_of(labels) == {(0, 0): "planet"}


def test_report_is_printable(truth_archive: Path) -> None:
    labels = load_labels(f"truth:{truth_archive}", examples_table(TRUTH_EXAMPLES))
    report = dataclasses.asdict(labels.report)
    assert isinstance(labels.report, LabelReport)
    for name, value in report.items():
        assert isinstance(value, str | int | tuple), name
        if isinstance(value, tuple):
            assert all(isinstance(v, str | int) for v in value), name
