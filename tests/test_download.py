"""`starskope download`: mirrors of a manifest's products (folder, S3), resume, curl scripts.

Real parts only: the simulated archive on disk, a moto S3 server and stdlib HTTP servers on
127.0.0.1 (one that stops halfway through a product until it is let go, to kill a download
mid-flight; one that wants a MAST-style token), the ``starskope`` command in a subprocess.
"""

from __future__ import annotations

import contextlib
import filecmp
import functools
import http.server
import json
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from starskope_dask.cli import main
from starskope_dask.config import StorageConfig
from starskope_dask.discover import list_archive, manifest_frame, write_manifest
from starskope_dask.download import (
    curl_line,
    download_manifest,
    failure_report,
    needs_token,
    plan_download,
    write_curl_script,
)
from starskope_dask.errors import ConfigError, StoreError

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "mast-tok-5d1e7c0f9a2b4e66-NEVER-SHOWN"


# ------------------------------------------------------------------------------ helpers


def subset(sim_archive: Path, n: int) -> pd.DataFrame:
    """``n`` products of the simulated archive, spread over the missions (local paths)."""
    full = list_archive(str(sim_archive))
    step = max(1, len(full) // n)
    return full.iloc[::step].head(n).reset_index(drop=True)


def relative(frame: pd.DataFrame, sim_archive: Path) -> list[str]:
    return [os.path.relpath(uri, sim_archive) for uri in frame["s3_uri"]]


def manifest_file(frame: pd.DataFrame, folder: Path, name: str = "manifest.parquet") -> str:
    path = folder / name
    write_manifest(frame, str(path))
    return str(path)


def over_http(frame: pd.DataFrame, sim_archive: Path, base: str) -> pd.DataFrame:
    """The same products, HTTPS-only rows pointing at ``base`` (the archive served)."""
    rows = frame.to_dict("records")
    for row, key in zip(rows, relative(frame, sim_archive), strict=True):
        row["https_url"] = f"{base}/{key}"
        row["s3_uri"] = ""
    return manifest_frame(rows)


def files_below(folder: Path) -> dict[str, Path]:
    return {
        str(p.relative_to(folder)): p
        for p in folder.rglob("*")
        if p.is_file() and not p.relative_to(folder).parts[0].startswith("_download")
    }


def hidden_parts(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*") if ".part-" in p.name]


class ServerState:
    """What a product server does and saw."""

    def __init__(self, free: int | None = None, token: str | None = None) -> None:
        self.free = free  # products served whole; after them each stops halfway until `gate`
        self.token = token  # wanted as "Authorization: token ..."
        self.gate = threading.Event()
        self.lock = threading.Lock()
        self.served = 0
        self.seen: list[tuple[str, str | None]] = []


@contextlib.contextmanager
def product_server(folder: Path, state: ServerState) -> Iterator[str]:
    """``folder`` over HTTP on 127.0.0.1, as ``state`` says; yields the base URL."""

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            header = self.headers.get("Authorization")
            with state.lock:
                state.seen.append((self.path, header))
            if state.token is not None and header != f"token {state.token}":
                self.send_error(401, "a MAST token is needed")
                return
            super().do_GET()

        def copyfile(self, source: Any, outputfile: Any) -> None:
            data = source.read()
            with state.lock:
                state.served += 1
                whole = state.free is None or state.served <= state.free
            if whole:
                outputfile.write(data)
                return
            outputfile.write(data[: len(data) // 2])
            outputfile.flush()
            state.gate.wait(60)
            outputfile.write(data[len(data) // 2 :])

    class Server(http.server.ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request: Any, client_address: Any) -> None:
            pass  # a client killed mid-transfer

    server = Server(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        state.gate.set()
        server.shutdown()
        server.server_close()


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "starskope_dask.cli", *args]


# ----------------------------------------------------------------------------- planning


def test_plan_keeps_the_public_layout_and_avoids_collisions(tmp_path: Path) -> None:
    kepler = "kepler/public/lightcurves/0106/010666592/kplr010666592-2009131110544_slc.fits"
    tess = "tess2019198215352-s0014-0000000424865156-0150-s_lc.fits"
    qlp = "hlsp_qlp_tess_ffi_s0014-0000000424865156_tess_v01_llc.fits"
    mast = "https://mast.stsci.edu/api/v0.1/Download/file?uri=mast:TESS/product/"
    frame = pd.DataFrame(  # in this order (manifest_frame would sort it)
        [
            {"mission": "Kepler", "s3_uri": f"s3://stpubdata/{kepler}", "size": 10},
            # the same product from elsewhere: copied once
            {"mission": "Kepler", "https_url": f"https://example.org/x/{kepler.rsplit('/')[-1]}"},
            {"mission": "TESS", "https_url": mast + tess},
            {"mission": "TESS", "s3_uri": f"s3://stpubdata/tess/public/hlsp/qlp/s0014/{qlp}"},
            {"mission": "K2", "https_url": "https://archive.example/a/hlsp_k2sc_k2_llc_x.fits"},
            {"mission": "K2", "https_url": "https://archive.example/b/hlsp_k2sc_k2_llc_x.fits"},
            {"mission": "", "https_url": "https://archive.example/c/odd name;$(x).fits?y=1"},
        ]
    )
    items = plan_download(frame, str(tmp_path))
    keys = [item.key for item in items]
    assert (
        keys[0] == kepler and items[0].size == 10 and items[0].source == f"s3://stpubdata/{kepler}"
    )
    assert keys[1] == "tess/public/tid/s0014/0000/0004/2486/5156/" + tess  # from the name alone
    assert keys[2] == "tess/public/hlsp/qlp/s0014/" + qlp  # the bucket's key
    k2 = [k for k in keys if "k2sc" in k]  # one name, two URLs: each gets its URL's hash
    assert len(set(k2)) == 2 and all(k.startswith("k2/hlsp_k2sc_k2_llc_x-") for k in k2)
    assert keys[-1] == "other/odd_name___x_.fits"
    assert len(items) == len(frame) - 1 and len(set(keys)) == len(keys)
    assert all(item.dest == str(tmp_path / item.key) for item in items)
    assert plan_download(frame, str(tmp_path)) == items  # deterministic
    on_s3 = plan_download(frame, "s3://bucket/mirror/")
    assert on_s3[0].dest == f"s3://bucket/mirror/{kepler}"
    # https: MAST's URL for a public-bucket URI
    assert plan_download(frame.iloc[:1], "d", "https")[0].source.startswith(
        "https://archive.stsci.edu/missions/kepler/lightcurves/0106/"
    )
    with pytest.raises(ConfigError, match=r"rows 1, 2, 4, 5, 6.*no s3_uri.*--source s3"):
        plan_download(frame, "d", "s3")
    with pytest.raises(ConfigError, match="source must be one of"):
        plan_download(frame, "d", "ftp")


def test_plan_refuses_keys_that_leave_dest_and_bad_sizes() -> None:
    climbing = manifest_frame([{"mission": "K2", "s3_uri": "s3://stpubdata/../../etc/passwd"}])
    with pytest.raises(ConfigError, match=r"manifest m\.parquet: row 0: .*outside"):
        plan_download(climbing, "d", manifest="m.parquet")
    negative = pd.DataFrame({"s3_uri": ["s3://b/k2/x.fits"], "size": [-5]})
    with pytest.raises(ConfigError, match="row 0: size is not a byte count"):
        plan_download(negative, "d")
    with pytest.raises(ConfigError, match="no s3_uri or https_url column"):
        plan_download(pd.DataFrame({"url": ["x"]}), "d")


def test_token_only_for_mast_over_https() -> None:
    assert needs_token("https://mast.stsci.edu/api/v0.1/Download/file?uri=mast:TESS/x")
    assert not needs_token("http://mast.stsci.edu/api/v0.1/Download/file?uri=x")
    assert not needs_token("https://archive.stsci.edu/missions/kepler/x.fits")
    assert not needs_token("https://mast.stsci.edu.evil.example/x")
    assert needs_token("http://127.0.0.1:81/x", ("127.0.0.1:81",))
    assert not needs_token("http://127.0.0.1:82/x", ("127.0.0.1:81",))


# ------------------------------------------------------------------------------ folders


def test_download_to_a_folder_then_rerun_skips(sim_archive: Path, tmp_path: Path) -> None:
    frame = subset(sim_archive, 8)
    manifest = manifest_file(frame, tmp_path)
    dest = tmp_path / "mirror"
    summary = download_manifest(manifest, str(dest), storage=StorageConfig(), progress=False)
    assert (summary.n_products, summary.n_downloaded, summary.n_skipped, summary.n_failed) == (
        8,
        8,
        0,
        0,
    )
    assert summary.bytes == int(frame["size"].sum()) and summary.failures_url == ""
    found = files_below(dest)
    assert sorted(found) == sorted(relative(frame, sim_archive))  # the archive's own layout
    for key, path in found.items():
        assert filecmp.cmp(path, sim_archive / key, shallow=False)
    assert not hidden_parts(dest) and not (dest / "_download").exists()
    # a mirror is an archive
    mirrored = list_archive(str(dest))
    assert sorted(mirrored["size"]) == sorted(frame["size"])
    assert sorted(mirrored["product_type"]) == sorted(frame["product_type"])
    again = download_manifest(manifest, str(dest), storage=StorageConfig(), progress=False)
    assert (again.n_downloaded, again.n_skipped, again.bytes) == (0, 8, 0)
    assert json.loads(json.dumps(again.as_dict()))["n_skipped"] == 8


# ---------------------------------------------------------------------------------- S3


def test_download_from_and_to_a_local_s3_bucket(sim_archive: Path, tmp_path: Path, s3: Any) -> None:
    import fsspec

    fs = fsspec.filesystem("s3", **s3.storage_options(anon=False))
    frame = subset(sim_archive, 6)
    for key in relative(frame, sim_archive):
        fs.put_file(str(sim_archive / key), f"stpubdata/dl-source/{key}")
    listed = list_archive("s3://stpubdata/dl-source/", s3.storage_options())
    manifest = manifest_file(listed, tmp_path)
    gone = "s3://stpubdata/dl-source/kepler/public/lightcurves/0000/000000002/"
    gone += "kplr000000002-2009131110544_llc.fits"
    with_gone = manifest_frame([*listed.to_dict("records"), {"mission": "Kepler", "s3_uri": gone}])
    storage = StorageConfig(retries=0)  # anonymous reads, the endpoint from AWS_ENDPOINT_URL_S3
    summary = download_manifest(
        manifest_file(with_gone, tmp_path, "gone.parquet"),
        "s3://stpubdata/dl-mirror",
        storage=storage,
        progress=False,
    )
    assert (summary.n_products, summary.n_downloaded, summary.n_failed) == (7, 6, 1)
    for key in relative(frame, sim_archive):  # the public layout, not the source's prefix
        assert fs.cat_file(f"stpubdata/dl-mirror/{key}") == (sim_archive / key).read_bytes()
    failures = "stpubdata/dl-mirror/_download/failures.csv"
    assert summary.failures_url == f"s3://{failures}" and gone in fs.cat_file(failures).decode()
    assert len(list_archive("s3://stpubdata/dl-mirror/", s3.storage_options())) == 6
    again = download_manifest(
        manifest, "s3://stpubdata/dl-mirror/", storage=storage, progress=False
    )
    assert (again.n_downloaded, again.n_skipped, again.n_failed) == (0, 6, 0)
    fs.invalidate_cache()
    assert not fs.exists(failures)  # a run without failures removes the table
    # S3 to a folder, through the CLI
    dest = tmp_path / "local"
    assert main(["download", manifest, str(dest), "--source", "s3", "-q"]) == 0
    assert sorted(files_below(dest)) == sorted(relative(frame, sim_archive))


def test_s3_destination_without_a_bucket_is_refused(
    sim_archive: Path, tmp_path: Path, s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = manifest_file(subset(sim_archive, 2), tmp_path)
    assert main(["download", manifest, "s3://no-such-bucket-dl/x", "-q"]) == 3
    err = capsys.readouterr().err
    assert "s3://no-such-bucket-dl/x" in err and "bucket" in err


# -------------------------------------------------------------------- kill and resume


def test_killed_download_resumes_without_partial_files(sim_archive: Path, tmp_path: Path) -> None:
    frame = subset(sim_archive, 8)
    keys = relative(frame, sim_archive)
    dest = tmp_path / "mirror"
    state = ServerState(free=3)
    with product_server(sim_archive, state) as base:
        manifest = manifest_file(over_http(frame, sim_archive, base), tmp_path)
        command = cli(
            "download", manifest, str(dest), "--source", "https", "--concurrency", "2", "-q"
        )
        process = subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            deadline = time.monotonic() + 60
            while not dest.exists() or len(files_below(dest)) < 3:
                assert process.poll() is None, process.communicate()
                assert time.monotonic() < deadline, "the first products never landed"
                time.sleep(0.05)
            while state.served < 5:  # two more requests, each stopped halfway
                assert process.poll() is None, process.communicate()
                assert time.monotonic() < deadline, "the stopped requests never came"
                time.sleep(0.05)
            time.sleep(0.2)  # the window is full: nothing more can land
        finally:
            process.send_signal(signal.SIGKILL)
            process.communicate()
        landed = files_below(dest)
        assert len(landed) == 3  # complete products only: nothing half-sent has a final name
        for key, path in landed.items():
            assert filecmp.cmp(path, sim_archive / key, shallow=False)
        # what a run killed mid-write leaves: a hidden temporary file, and (from elsewhere)
        # a file cut short under a final name
        pending = dest / next(k for k in keys if k not in landed)
        pending.parent.mkdir(parents=True, exist_ok=True)
        stale = pending.with_name(f".{pending.name}.part-{process.pid}-1")
        stale.write_bytes(b"SIMPLE  =" + b"\0" * 100)
        cut = sorted(landed)[0]
        (dest / cut).write_bytes((sim_archive / cut).read_bytes()[:1000])
        state.gate.set()
        rerun = subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
        )
    assert rerun.returncode == 0, rerun.stderr
    assert "2 already there" in rerun.stdout and "6 of 8" in rerun.stdout
    final = files_below(dest)
    assert sorted(final) == sorted(keys)
    for key, path in final.items():
        assert filecmp.cmp(path, sim_archive / key, shallow=False), key
    assert not hidden_parts(dest)


# --------------------------------------------------------------------------- failures


def test_size_mismatch_and_missing_products_are_failures(
    sim_archive: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = subset(sim_archive, 5)
    keys = relative(frame, sim_archive)
    bad = frame.copy()
    bad.loc[1, "size"] = int(bad.loc[1, "size"]) + 1  # the manifest says otherwise
    gone = sim_archive / "kepler" / "gone" / "kplr000000001-2009131110544_llc.fits"
    bad.loc[2, "s3_uri"] = str(gone)
    manifest = manifest_file(bad, tmp_path)
    dest = tmp_path / "mirror"
    assert main(["download", manifest, str(dest), "-q"]) == 1
    out, err = capsys.readouterr()
    assert "3 of 5 products downloaded" in out and "2 failed" in out
    assert "CorruptProductError" in err and "the manifest says" in err
    assert "ProductNotFoundError" in err
    failures_csv = dest / "_download" / "failures.csv"
    assert str(failures_csv) in err
    table = pd.read_csv(failures_csv)
    assert sorted(table["error_type"]) == ["CorruptProductError", "ProductNotFoundError"]
    assert set(files_below(dest)) == {keys[0], keys[3], keys[4]}  # no file for the failures
    assert not hidden_parts(dest)
    # fixed: the rest lands, the failure table goes
    assert main(["download", manifest_file(frame, tmp_path, "fixed.parquet"), str(dest), "-q"]) == 0
    assert "3 already there" in capsys.readouterr().out
    assert not failures_csv.exists() and sorted(files_below(dest)) == sorted(keys)


def test_many_failures_are_cut_short_on_the_terminal(tmp_path: Path) -> None:
    names = [f"ktwo2{i:08d}-c01_llc.fits" for i in range(25)]
    rows = [{"mission": "K2", "s3_uri": str(tmp_path / "none" / name)} for name in names]
    manifest = manifest_file(manifest_frame(rows), tmp_path)
    summary = download_manifest(
        manifest, str(tmp_path / "d"), storage=StorageConfig(), progress=False
    )
    assert summary.n_failed == 25 and len(summary.failures) == 25
    lines = failure_report(summary)
    assert len(lines) == 22 and "and 5 more" in lines[-2] and summary.failures_url in lines[-1]


def test_dest_that_cannot_be_written(
    sim_archive: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = manifest_file(subset(sim_archive, 2), tmp_path)
    a_file = tmp_path / "a-file"
    a_file.write_text("mine")
    assert main(["download", manifest, str(a_file), "-q"]) == 3
    err = capsys.readouterr().err
    assert str(a_file) in err and "choose another DEST" in err
    assert a_file.read_text() == "mine"
    assert main(["download", manifest, str(a_file / "below"), "-q"]) == 3
    assert main(["download", manifest, "https://example.org/mirror", "-q"]) == 2
    with pytest.raises(StoreError, match="it is a file"):
        download_manifest(manifest, str(a_file), storage=StorageConfig(), progress=False)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_dest(sim_archive: Path, tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(StoreError, match="not writable"):
            download_manifest(
                manifest_file(subset(sim_archive, 1), tmp_path),
                str(folder),
                storage=StorageConfig(),
                progress=False,
            )
    finally:
        folder.chmod(0o700)


def test_bad_manifests_and_options(
    sim_archive: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = str(tmp_path / "d")
    text = tmp_path / "notes.parquet"
    text.write_text("not a manifest")
    assert main(["download", str(text), dest, "-q"]) == 2
    assert str(text) in capsys.readouterr().err
    blank = tmp_path / "blank.parquet"
    pd.DataFrame({"s3_uri": ["", "x.fits"], "https_url": ["", ""]}).to_parquet(blank)
    assert main(["download", str(blank), dest, "-q"]) == 2
    err = capsys.readouterr().err
    assert str(blank) in err and "row 0" in err
    manifest = manifest_file(subset(sim_archive, 1), tmp_path)
    assert main(["download", manifest, dest, "--concurrency", "0"]) == 2
    assert "--concurrency" in capsys.readouterr().err
    assert main(["download", str(tmp_path / "missing.parquet"), dest]) == 2
    assert not Path(dest).exists()  # nothing made for a run that could not start
    with pytest.raises(ConfigError, match="concurrency"):
        download_manifest(manifest, dest, storage=StorageConfig(), concurrency=0)


# -------------------------------------------------------------------------- curl scripts


def called(script: Path, env: dict[str, str] | None = None) -> list[list[str]]:
    """The argument lists the script hands to curl, as bash parses them (curl replaced by a
    function that prints its arguments), run in the script's folder.
    """
    # a header given as @FILE (the token's way in, off the command line) is shown as its text,
    # tagged, so that a token on a command line and one in a file tell apart
    shim = (
        'curl() { local a; for a in "$@"; do if [[ $a == @* && -f ${a#@} ]]; then '
        'printf "file:%s\\0" "$(cat "${a#@}")"; else printf "%s\\0" "$a"; fi; done; '
        'printf "\\1\\0"; }; source "$1"'
    )
    result = subprocess.run(
        ["bash", "-c", shim, "bash", str(script)],
        cwd=script.parent,
        capture_output=True,
        check=True,
        env=env or {"PATH": os.environ["PATH"]},
    )
    calls: list[list[str]] = [[]]
    for word in result.stdout.decode().split("\0")[:-1]:
        if word == "\1":
            calls.append([])
        else:
            calls[-1].append(word)
    return calls[:-1]


def test_curl_script_is_valid_bash_one_curl_per_product(sim_archive: Path, tmp_path: Path) -> None:
    frame = subset(sim_archive, 4)
    keys = relative(frame, sim_archive)
    mast = (
        "https://mast.stsci.edu/api/v0.1/Download/file?uri=mast:TESS/product/hlsp_x_tess_llc.fits"
    )
    crafted = [
        "http://127.0.0.1:9/a'; touch pwned-quote; echo '.fits",
        "http://127.0.0.1:9/b$(touch pwned-subshell).fits",
        "http://127.0.0.1:9/c`touch pwned-backtick`.fits",
        "http://127.0.0.1:9/d\ntouch pwned-newline\n.fits",
        'http://127.0.0.1:9/e"$HOME";touch pwned-dq.fits',
    ]
    work = tmp_path / "work"
    work.mkdir()
    state = ServerState()
    with product_server(sim_archive, state) as base:
        plain = over_http(frame, sim_archive, base)
        extra = [{"mission": "TESS", "https_url": mast}] + [
            {"mission": "K2", "https_url": url} for url in crafted
        ]
        manifest = manifest_frame(plain.to_dict("records") + extra)
        script = work / "get.sh"
        n = write_curl_script(manifest, "mirror", str(script), source="https")
        assert n == len(frame) + 1 + len(crafted)
        text = script.read_text()
        assert text.startswith("#!/bin/bash\n#\n") and f"Download {n} products" in text
        assert os.access(script, os.X_OK)
        subprocess.run(["bash", "-n", str(script)], check=True)
        words = shlex.split(text, comments=True)
        assert words.count("curl") == n
        calls = called(script)
        assert len(calls) == n and not list(work.glob("pwned*"))
        items = plan_download(manifest, "mirror", "https")
        for call, item in zip(calls, items, strict=True):
            assert call[call.index("-o") + 1] == item.dest and call[-1] == item.source
            assert "--fail" in call and "--create-dirs" in call and "-L" in call
        assert [c for c in calls if "-H" in c] == []  # no token in the environment: no header
        with_token = called(script, {"PATH": os.environ["PATH"], "MAST_API_TOKEN": TOKEN})
        headers = [c[c.index("-H") + 1] for c in with_token if "-H" in c]
        # the MAST line only, from a file: the token is on no command line
        assert headers == [f"file:Authorization: token {TOKEN}"]
        assert all("--globoff" in c for c in calls)
        assert TOKEN not in text and "${MAST_API_TOKEN" in text
        # run for real (curl on the plain products): the same files download would write
        plain_script = work / "plain.sh"
        write_curl_script(plain, "mirror", str(plain_script))
        subprocess.run(["bash", str(plain_script)], cwd=work, check=True, capture_output=True)
    for key in keys:
        assert filecmp.cmp(work / "mirror" / key, sim_archive / key, shallow=False)
    assert not list(work.glob("pwned*"))


def test_curl_line_quotes_everything() -> None:
    line = curl_line("https://h/x'y", "out dir/a b.fits", token_var=True)
    words = shlex.split(line)
    assert words[0] == "curl" and words[-1] == "https://h/x'y" and "out dir/a b.fits" in words
    assert '${MAST_AUTH[@]+"${MAST_AUTH[@]}"}' in line and "--globoff" in line
    assert "MAST_API_TOKEN" not in line  # the preamble reads it once, into a private file


def test_cli_curl_script(
    sim_archive: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = manifest_file(subset(sim_archive, 3), tmp_path)
    script = tmp_path / "get.sh"
    assert main(["download", manifest, str(tmp_path / "m"), "--curl-script", str(script)]) == 0
    assert str(script) in capsys.readouterr().out
    assert len([line for line in script.read_text().splitlines() if line.startswith("curl ")]) == 3
    assert not (tmp_path / "m").exists()  # a script, not a download
    assert main(["download", manifest, "s3://b/m", "--curl-script", str(script)]) == 2
    assert main(["download", manifest, "m", "--curl-script", str(tmp_path)]) == 3


# ------------------------------------------------------------------------------ the token


def test_mast_token_is_sent_to_mast_only_and_never_shown(
    sim_archive: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)
    frame = subset(sim_archive, 4)
    mast_state, open_state = ServerState(token=TOKEN), ServerState()
    with (
        product_server(sim_archive, mast_state) as mast,
        product_server(sim_archive, open_state) as public,
    ):
        exclusive = over_http(frame.iloc[:2], sim_archive, mast).to_dict("records")
        exclusive.append(
            {"mission": "K2", "https_url": f"{mast}/k2/nope/ktwo200000009-c01_llc.fits"}
        )
        rows = exclusive + over_http(frame.iloc[2:], sim_archive, public).to_dict("records")
        manifest = manifest_file(manifest_frame(rows), tmp_path)
        host = mast.removeprefix("http://")
        summary = download_manifest(
            manifest,
            str(tmp_path / "ok"),
            storage=StorageConfig(retries=0),
            progress=False,
            token=TOKEN,
            token_hosts=(host,),
        )
        assert (summary.n_downloaded, summary.n_failed) == (4, 1)
        assert summary.failures[0][1] == "ProductNotFoundError"
        assert {h for _, h in mast_state.seen} == {f"token {TOKEN}"}
        assert {h for _, h in open_state.seen} == {None}  # never sent elsewhere
        # a wrong token: MAST says 401, a failure row that does not show the token
        wrong = download_manifest(
            manifest,
            str(tmp_path / "wrong"),
            storage=StorageConfig(retries=0),
            progress=False,
            token=TOKEN + "-old",
            token_hosts=(host,),
        )
        assert wrong.n_failed == 3 and {f[1] for f in wrong.failures} == {"FetchError"}
        assert all("access denied" in f[2] for f in wrong.failures)
        # the command line: the token from the environment, verbose, a failure, a curl script
        monkeypatch.setenv("MAST_API_TOKEN", TOKEN)
        assert main(["-vv", "download", manifest, str(tmp_path / "cli"), "-q"]) == 1
        assert main(["download", manifest, "cli", "--curl-script", str(tmp_path / "get.sh")]) == 0
    out, err = capsys.readouterr()
    shown = out + err + caplog.text + repr(summary) + json.dumps(summary.as_dict())
    shown += repr(wrong) + "".join(str(r.__dict__) for r in caplog.records)
    assert "failed" in err and TOKEN not in shown
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
    assert "${MAST_API_TOKEN" not in (tmp_path / "get.sh").read_text()  # no MAST host here


def test_the_command_is_documented() -> None:
    result = subprocess.run(
        cli("download", "--help"), cwd=ROOT, capture_output=True, text=True, check=True
    )
    for word in ("MANIFEST", "DEST", "--source", "--concurrency", "--curl-script", "exit codes"):
        assert word in result.stdout
    assert shutil.which("bash")


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/role",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://[fe80::1]/x.fits",
    ],
)
def test_a_manifest_pointing_at_instance_metadata_is_refused(url: str, tmp_path: Path) -> None:
    frame = manifest_frame([{"mission": "K2", "https_url": url}])
    with pytest.raises(ConfigError, match="cloud-metadata"):
        plan_download(frame, str(tmp_path / "mirror"), "https")
