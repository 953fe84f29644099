"""Scale on paper: wall time, workers and cost of ingesting and featurising whole archives.

Takes the per-worker rates the committed benchmarks measured on the 2-core development machine
(README "Benchmarks") and projects them onto the whole Kepler long-cadence archive, all of K2
and all TESS 2-min SPOC light curves in ``s3://stpubdata`` (us-east-1), for a sweep of worker
counts. Every phase of the design gets a time from each limit that can bind it, and its wall
time is the largest of them (a roofline, no overlap between phases):

* worker CPU, in waves of whole tasks (a read-pass partition, a star chunk);
* network bandwidth per instance (each worker's share of the instance's sustained bandwidth);
* S3 request rates per partitioned prefix: GETs of the archive (spread over as many of its key
  prefixes as the run's in-flight window touches: the manifest is sorted by URL, so the
  workers read neighbouring keys), GETs and PUTs of the store (a fresh prefix: one partition);
* the Dask scheduler's task rate;
* serial driver work: the cross-match of every product, and the features stage's catalogue
  lookups at MAST (batched by TIC or KIC ID, one cone search per star with only an EPIC ID).

Task counts are the code's (``starskope_dask/pipeline.py``, ``features/pipeline.py``): the read
pass is a Dask bag of partitions of ``min(128, ceil(N / (8 × workers)))`` products (2 tasks a
partition: the partition's data and ``read_partition``), staging one pack (one PUT) per 64
products; the write pass is one task per star chunk of 64 stars, reading each staged product
back with one ranged GET and writing 2 objects (flux, flux_err) per occupied time chunk plus a
pending record, a done-marker and the pending record's DELETE; the features stage is one task
per star chunk, reading the same chunk objects and writing one object per features variable
plus a done-marker.

Everything here is arithmetic on the constants below; each names its source. The rates can be
replaced by a JSON file (``--rates FILE``, keys as in :class:`Rates`; ``--print-rates`` writes
the defaults), so a new benchmark run feeds straight in.

    python jobs/scale_on_paper.py                          # the default sweep, plain text
    python jobs/scale_on_paper.py --markdown               # README tables
    python jobs/scale_on_paper.py --workers 256 --rates my-rates.json --stellar table
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

MB = 1e6
GB = 1e9
HOUR = 3600.0

StellarSource = Literal["mast", "table", "none"]
PrefixModel = Literal["layout", "single"]
StellarLookup = Literal["tic", "kic", "cone"]


# ----------------------------------------------------------------------------- the archives


@dataclasses.dataclass(frozen=True)
class StarClass:
    """Stars of an archive that cost alike in the features stage.

    The transit search folds each *group* of data (split at gaps over a year) over the
    group's span: its cost is taken as linear in the group's points and in its number of
    trial periods (the Ofir grid, linear in the span), as the BLS cost is linear in both.
    """

    fraction: float  # of the archive's stars
    products_per_star: float
    search_groups: float  # groups of data searched apart (years apart: TESS revisits)
    points_per_group: float  # observed steps of the 30-min grid in one group
    group_span_days: float


@dataclasses.dataclass(frozen=True)
class Archive:
    """One archive: how many products and stars, how big, and how its keys spread."""

    name: str
    n_products: int
    mean_product_bytes: float
    n_stars: int
    mean_points_per_star: float  # observed steps of the cube's 30-min grid
    classes: tuple[StarClass, ...]
    key_prefixes: int  # first-level key folders the products spread over (see below)
    time_chunks_per_star_chunk: int  # occupied time chunks of one cube star chunk
    stellar_lookup: StellarLookup  # how the features stage finds a star in the TIC at MAST
    source: str  # where the figures come from (one line)

    @property
    def products_per_star(self) -> float:
        """Mean products per star."""
        return self.n_products / self.n_stars


# Grid step of the cube (starskope.yaml grid.cadence_days) and its time chunk (ingest.time_chunk):
# a time chunk spans 4096 × 0.0204336 d = 83.7 d.
GRID_CADENCE_DAYS = 0.02043359821692
TIME_CHUNK_STEPS = 4096

# Kepler long cadence (Q0–Q17, ``*_llc.fits``).
# * Stars: 198,646 targets searched in Q1–Q17, 112,001 of them observed in every quarter and
#   86,645 in a subset (Seader et al. 2015, "Detection of potential transit signals in 17
#   quarters of Kepler mission data", abstract). Q0-only targets and custom apertures (a few
#   thousand) are left out.
# * Products: not found offline. A star observed throughout has 18 llc files (Q0–Q17: the 18
#   files of KIC 7660594 in ../shared/data/real/kepler); the 86,645 others are assumed to have
#   8.5 quarters each, which gives 2.75 M files, i.e. ~160 k targets a quarter, the order of
#   the 150–170 k Kepler observed each quarter. Range: ~2.5–2.9 M.
# * Size: mean of the 69 real llc files in ../shared/data/real/kepler: 0.414 MB (a full quarter
#   is 0.47–0.51 MB; Q0, Q1 and Q17 are short); KIC 7660594's 18 files average 0.418 MB.
# * Points: 65,263 good cadences for the 18 quarters of KIC 7660594 (jobs/bench_search.py),
#   i.e. 3,626 a file; span 2454953.5–2456424.0 (1,470 d), from the real files.
# * Keys: kepler/public/lightcurves/<KIC9[:4]>/<KIC9>/... (../shared/data/real/README.md);
#   KIC IDs run from ~757,000 to ~12,900,000, so <KIC9[:4]> takes ~123 values (0007–0129).
# * Time chunks: the 1,470-d span covers chunks 0–17 of the cube's grid (start 2454950).
KEPLER_FULL, KEPLER_PARTIAL = 112_001, 86_645
KEPLER_PARTIAL_QUARTERS = 8.5
KEPLER_POINTS_PER_FILE = 65_263 / 18
KEPLER = Archive(
    name="Kepler LC",
    n_products=round(KEPLER_FULL * 18 + KEPLER_PARTIAL * KEPLER_PARTIAL_QUARTERS),
    mean_product_bytes=0.414 * MB,
    n_stars=KEPLER_FULL + KEPLER_PARTIAL,
    mean_points_per_star=(
        KEPLER_FULL * 65_263 + KEPLER_PARTIAL * KEPLER_PARTIAL_QUARTERS * KEPLER_POINTS_PER_FILE
    )
    / (KEPLER_FULL + KEPLER_PARTIAL),
    classes=(
        StarClass(KEPLER_FULL / (KEPLER_FULL + KEPLER_PARTIAL), 18, 1, 65_263, 1_470.0),
        StarClass(
            KEPLER_PARTIAL / (KEPLER_FULL + KEPLER_PARTIAL),
            KEPLER_PARTIAL_QUARTERS,
            1,
            KEPLER_PARTIAL_QUARTERS * KEPLER_POINTS_PER_FILE,
            KEPLER_PARTIAL_QUARTERS * 90.0,  # assumed contiguous quarters
        ),
    ),
    key_prefixes=123,
    time_chunks_per_star_chunk=18,
    stellar_lookup="kic",
    source="Seader+2015 (198,646 targets, 112,001 in every quarter); files: assumption",
)

# K2 long cadence (C0–C19; C9, C10 and C11 were delivered in two halves, a file each).
# * Products: C1–C8 ≈ 157,500 target-campaigns (Huber et al. 2016, ApJS 224, 2: 138,600
#   classified targets in C1–8 are ~88 % of them); C13: 26,242 LC targets and C19: 44,152 LC
#   EPIC IDs (K2 data release notes, keplerscience.arc.nasa.gov); C0 (~8 k) and C9–C19 taken at
#   ~25 k a campaign, plus ~45 k second-half files of C9–C11: ≈ 480 k files. Range 420–520 k.
# * Stars: ~20 % of target-campaigns assumed to be repeats of a star (overlapping fields
#   C5/C16/C18, C4/C13, C6/C17, C3/C12/C19, and the split halves): ≈ 390 k unique EPIC IDs.
# * Size: mean of the 10 real files in ../shared/data/real/k2: 0.395 MB (3,470–3,663 rows).
# * Points: ~3,500 good cadences per ~78-d campaign on the 30-min grid.
# * Keys: k2/public/lightcurves/c<N>/<EPIC//100000*100000>/...: ~26 campaign folders.
# * Time chunks: star rows are ordered by position, and neighbours share a field: a campaign
#   covers 1–2 time chunks, a revisit one more (assumption: 3).
# * Stellar: the TIC has no EPIC column, so through MAST each EPIC-only star is one 2" cone
#   search (starskope_dask/features/stellar.py).
K2 = Archive(
    name="K2 LC",
    n_products=480_000,
    mean_product_bytes=0.395 * MB,
    n_stars=390_000,
    mean_points_per_star=480_000 / 390_000 * 3_500,
    classes=(StarClass(1.0, 480_000 / 390_000, 480_000 / 390_000, 3_500, 78.0),),
    key_prefixes=26,
    time_chunks_per_star_chunk=3,
    stellar_lookup="cone",
    source="Huber+2016 (C1-8), K2 release notes (C13, C19); rest ~25 k/campaign (assumption)",
)

# TESS SPOC 2-min light curves (``*-s_lc.fits``), sectors 1 to ~100.
# * Sectors: sector 1 began 2018-07-25; at ~27.4 d a sector, sector 100 ends about 2026-01.
# * Targets: "2-minute sampling of 20,000 targets for most sectors" (Caldwell et al. 2020,
#   arXiv:2011.05495; the TESS-SPOC HLSP page at MAST: sector 14's list holds 20,000 2-min
#   targets); the extended missions kept ~20 k. Products ≈ 100 × 20,000 = 2.0 M (1.7–2.1 M).
# * Stars: not found offline; many 2-min targets are re-observed (guest programmes, the
#   continuous viewing zones): ≈ 450 k unique TIC IDs assumed (range 300–600 k).
# * Size: mean of the 9 real files in ../shared/data/real/tess (sectors 1, 14, 15): 2.02 MB.
# * Points: a 27.4-d sector is ~1,340 steps of the 30-min grid; minus the downlink gap and
#   flagged cadences ~1,200. Typical stars: ~3.8 sectors in 2 groups years apart; 7 % of the
#   stars (continuous viewing zones) 13 sectors in one 356-d group (assumption).
# * Keys: tess/public/tid/s<SSSS>/<TIC16[0:4]>/...: ~100 sector folders.
# * Time chunks: sectors 1–100 span ~2,675 d = 32 time chunks, and position-ordered
#   neighbours are seen in different sectors: a star chunk touches nearly all of them.
TESS_STARS = 450_000
TESS_CVZ = 0.07
TESS_TYPICAL_SECTORS = (2_000_000 / TESS_STARS - TESS_CVZ * 13) / (1 - TESS_CVZ)
TESS = Archive(
    name="TESS 2-min",
    n_products=2_000_000,
    mean_product_bytes=2.02 * MB,
    n_stars=TESS_STARS,
    mean_points_per_star=2_000_000 / TESS_STARS * 1_200,
    classes=(
        StarClass(1 - TESS_CVZ, TESS_TYPICAL_SECTORS, 2, TESS_TYPICAL_SECTORS / 2 * 1_200, 52.0),
        StarClass(TESS_CVZ, 13, 1, 13 * 1_200, 356.0),
    ),
    key_prefixes=100,
    time_chunks_per_star_chunk=32,
    stellar_lookup="tic",
    source="Caldwell+2020 (20,000 2-min targets a sector) x ~100 sectors; stars: assumption",
)

ARCHIVES = (KEPLER, K2, TESS)


# ------------------------------------------------------------------------- measured rates


@dataclasses.dataclass(frozen=True)
class Rates:
    """Per-worker rates (one worker = one process, one thread, one core)."""

    read_products_per_s: float  # read pass, per worker
    read_mb_per_s: float  # read pass, source MB per worker (per product: the slower of the two)
    write_products_per_s: float  # write pass, staged products assembled and written per worker
    features_ref_s_per_star: float  # compute of one 4-year, 18-quarter Kepler star
    features_ref_points: float
    features_ref_span_days: float
    features_floor_s_per_star: float  # compute of a short single-mission star
    features_overhead_s_per_star: float  # the pipeline around the compute (cube I/O, Dask)
    cross_match_s_per_product: float  # the driver's cross-match
    store_bytes_per_product: float  # cube + staged copies
    driver_bytes_per_product: float  # driver memory growth of an ingest
    source: str = "README Benchmarks, bench_ingest.py / bench_search.py / bench_features.py"


#: Measured on this machine (2 cores, AMD EPYC Zen 4 under KVM, one thread per core).
BENCH_RATES = Rates(
    # bench_ingest.py at afe0989, 10,000 simulated products (12.6 GB), 2 workers, SeaweedFS on
    # the same 2 cores: "The read pass took 108 s, the write pass 10 s" (README, Benchmarks):
    # 10,000 / 108 s / 2 = 46.3 products/s and 12,600 MB / 108 s / 2 = 58.3 MB/s per worker.
    # (84.6 products/s, 107 MB/s for both passes together.) The S3 server's CPU is in it.
    read_products_per_s=10_000 / 108 / 2,
    read_mb_per_s=12_600 / 108 / 2,
    write_products_per_s=10_000 / 10 / 2,
    # bench_search.py at bdd4ed3: "2.53 s per star on one core" for the search of KIC 7660594
    # (18 quarters, 65,263 points; the two TESS sectors are too light to be searched as a group
    # of their own); bench_features.py (1,000 stars): "the search 82 %" of a star's time, so
    # the whole star is 2.53 / 0.82 = 3.09 s.
    features_ref_s_per_star=2.53 / 0.82,
    features_ref_points=65_263,
    features_ref_span_days=1_470.0,
    # bench_features.py --stars 300: 32 single-mission stars 0.29 s each (compute only).
    features_floor_s_per_star=0.29,
    # same run: the pipeline gave 0.57 s/star/core against a compute-only mean of
    # (32 × 0.29 + 8 × 0.81) / 40 = 0.39 s over the same sample: ~0.2 s a star around it.
    features_overhead_s_per_star=0.2,
    # bench_stages.py at afe0989: "cross_match of 10 000 products: 0.51 s" (one-off timings
    # with 13 products a star gave 23 µs a product: this is the conservative figure).
    cross_match_s_per_product=0.51 / 10_000,
    # bench_ingest.py: "store ≤ 20 % of the source (2.9 %: 36 kB per product, staged products
    # included)"; "driver +34 MB at 2 500, +49 MB at 10 000": 15 MB / 7,500 = 2 kB a product.
    store_bytes_per_product=36e3,
    driver_bytes_per_product=(49 - 34) * MB / 7_500,
)

#: The read pass's task body alone (bench_stages.py at afe0989: ``read_partition`` "4.64 ms
#: from a warm SeaweedFS", one process, no Dask): an upper bound for a worker whose S3 server
#: is elsewhere (real S3). Everything else as :data:`BENCH_RATES`.
TASK_BODY_RATES = dataclasses.replace(
    BENCH_RATES,
    read_products_per_s=1 / 4.64e-3,
    read_mb_per_s=1.26 / 4.64e-3,  # the simulated products average 1.26 MB (12.6 GB / 10,000)
    source="bench_stages.py read_partition 4.64 ms/product (warm SeaweedFS, no Dask)",
)

PRESETS = {"bench-ingest": BENCH_RATES, "task-body": TASK_BODY_RATES}


# ---------------------------------------------------------------- costs, limits, the design


@dataclasses.dataclass(frozen=True)
class Limits:
    """What the cloud and Dask allow, and what they cost."""

    # c7a (AMD EPYC Zen 4, the benchmark machine's core): one vCPU is one physical core
    # (no SMT on c7a), so one worker per vCPU matches the benchmark's worker. Price: AWS EC2
    # On-Demand, us-east-1, Linux, c7a.large $0.10264/h (linear in size: c7a.8xlarge
    # $1.64224/h), as listed on aws.amazon.com/ec2/pricing/on-demand (2025); not re-checked
    # offline — give --price-per-vcpu-hour.
    instance_type: str = "c7a.8xlarge"
    instance_vcpus: int = 32
    price_per_vcpu_hour: float = 0.10264 / 2
    price_source: str = "AWS EC2 On-Demand us-east-1 Linux, c7a, 2025 list price"
    # c7a.8xlarge: 12.5 Gbps sustained (not "up to"), shared by its 32 workers.
    instance_network_gbps: float = 12.5
    driver_vcpus: int = 8  # a c7a.2xlarge (16 GiB) for the scheduler and the driver
    # "at least 3,500 PUT/COPY/POST/DELETE or 5,500 GET/HEAD requests per second per
    # partitioned Amazon S3 prefix" (AWS S3 performance guidelines; AWS re:Post note: new
    # partitions are made automatically in 30–60 minutes of sustained load).
    s3_get_per_prefix_per_s: float = 5_500
    s3_put_per_prefix_per_s: float = 3_500
    store_partitions: int = 1  # the store is a new prefix of the user's bucket
    # S3 Standard, us-east-1: $0.0004 per 1,000 GETs, $0.005 per 1,000 PUTs, $0.023 per
    # GB-month. stpubdata is an AWS Open Data bucket (not requester-pays): its GETs and its
    # in-region transfer cost the reader nothing; only the store's requests are billed.
    s3_get_usd_per_1000: float = 0.0004
    s3_put_usd_per_1000: float = 0.005
    s3_storage_usd_per_gb_month: float = 0.023
    # "Every task comes with some overhead. This is somewhere between 200us and 1ms." (Dask
    # best practices); the upper end is taken, i.e. 1,000 tasks/s.
    scheduler_s_per_task: float = 1e-3
    scheduler_bytes_per_task: float = 10e3  # task state and spec on the scheduler (assumption)
    # MAST TIC lookups (starskope_dask/mast.py: 100 IDs a call, 4 calls in flight); 0.3 s a
    # call as in jobs/bench_discover.py's replay model (real calls are often slower).
    mast_seconds_per_call: float = 0.3
    mast_concurrency: int = 4
    mast_batch: int = 100
    # "The 93 real files take 3.8 s, mostly fixed costs" (README, bench_ingest.py): per phase.
    fixed_s_per_phase: float = 3.8

    @property
    def network_bytes_per_s_per_worker(self) -> float:
        """A worker's share of its instance's sustained bandwidth."""
        return self.instance_network_gbps * 1e9 / 8 / self.instance_vcpus


@dataclasses.dataclass(frozen=True)
class Design:
    """Counts the code makes (checked against the code by tests/test_scale_on_paper.py)."""

    star_chunk: int = 64  # starskope.yaml ingest.star_chunk: stars per chunk and per task
    pack_products: int = 64  # pipeline.PACK_PRODUCTS: staged products per pack (one PUT)
    max_partition: int = 128  # pipeline._ingest: partition_size = min(128, ...)
    partitions_per_worker: int = 8  # pipeline._ingest: ceil(N / (8 × workers))
    tasks_per_partition: int = 2  # from_sequence + read_partition (a bag, not fused)
    arrays_per_time_chunk: int = 2  # flux, flux_err: one object per Zarr chunk (no sharding)
    records_per_chunk: int = 3  # pending PUT, done-marker PUT, pending DELETE
    features_variables: int = 46  # len(features.layout.VARIABLES): one object per chunk each
    features_records_per_chunk: int = 1  # the done-marker


DESIGN = Design()


# ------------------------------------------------------------------------------ the model


#: The name of a phase's serial driver work as a limit.
SERIAL = "driver (serial)"


@dataclasses.dataclass(frozen=True)
class Phase:
    """One phase of a stage at a worker count: the time each limit allows, and its use."""

    name: str
    bounds: Mapping[str, float]  # limit → seconds it allows the phase; 0 where it cannot bind
    serial_s: float = 0.0  # driver time on top (nothing else runs)
    workers_billed: bool = True  # the cluster is up (features asks for it after its lookups)
    tasks: int = 0
    gets_store: float = 0.0
    puts_store: float = 0.0
    gets_source: float = 0.0

    @property
    def parallel_s(self) -> float:
        """The parallel part: the slowest limit."""
        return max(self.bounds.values(), default=0.0)

    @property
    def binding(self) -> str:
        """The limit that sets the phase's time (the driver when its serial work does)."""
        if self.serial_s >= self.parallel_s:
            return SERIAL
        return max(self.bounds, key=lambda k: self.bounds[k])

    @property
    def wall_s(self) -> float:
        """Wall time of the phase."""
        return self.parallel_s + self.serial_s


@dataclasses.dataclass(frozen=True)
class StageResult:
    """What one stage of one archive costs at one worker count."""

    archive: str
    stage: str
    workers: int
    phases: tuple[Phase, ...]
    wall_s: float
    worker_hours: float
    compute_usd: float
    driver_usd: float
    requests_usd: float
    source_gets: float  # on stpubdata: paid by the bucket owner, not the reader
    store_gb: float
    scheduler_peak_bytes: float
    driver_peak_bytes: float

    @property
    def total_usd(self) -> float:
        """Workers, the driver's instance and the store's requests."""
        return self.compute_usd + self.driver_usd + self.requests_usd

    @property
    def binding(self) -> str:
        """The limit of the phase that takes longest."""
        longest = max(self.phases, key=lambda p: p.wall_s)
        return f"{longest.binding} ({longest.name})"


def ofir_periods(span_days: float, min_period: float = 0.5, max_period: float = 500.0) -> float:
    """Trial periods of the Ofir (2014) grid over ``span_days``, up to a constant factor.

    ``N ∝ span × (f_max^⅓ − f_min^⅓)`` (``features/search.py: ofir_frequency_grid``), the
    longest period limited by the span (``run_transit_search``: ``min(cap, baseline)``).
    """
    top = min(max_period, span_days)
    if top <= min_period:
        return 0.0
    return span_days * ((1 / min_period) ** (1 / 3) - (1 / top) ** (1 / 3))


def features_seconds_per_star(archive: Archive, rates: Rates) -> float:
    """Mean features seconds a star (one core): the measured floor of a short star, plus the
    measured cost of a 4-year Kepler star above it scaled by points × trial periods per search
    group, plus the pipeline's overhead.
    """
    ref = rates.features_ref_points * ofir_periods(rates.features_ref_span_days)
    scalable = max(0.0, rates.features_ref_s_per_star - rates.features_floor_s_per_star)
    total = 0.0
    for cls in archive.classes:
        work = cls.search_groups * cls.points_per_group * ofir_periods(cls.group_span_days)
        total += cls.fraction * (rates.features_floor_s_per_star + scalable * work / ref)
    weight = sum(cls.fraction for cls in archive.classes)
    return total / weight + rates.features_overhead_s_per_star


def seconds_per_product(archive: Archive, rates: Rates) -> float:
    """Read-pass worker seconds a product: the slower of the product and the byte rate."""
    return max(
        1 / rates.read_products_per_s, archive.mean_product_bytes / (rates.read_mb_per_s * MB)
    )


def partition_size(n_products: int, workers: int, design: Design = DESIGN) -> int:
    """The read pass's bag partition size (``pipeline._ingest``)."""
    per = math.ceil(n_products / (design.partitions_per_worker * max(1, workers)))
    return max(1, min(design.max_partition, per))


def active_prefixes(
    archive: Archive, window_products: float, model: PrefixModel = "layout"
) -> float:
    """Key prefixes the in-flight window of a sorted manifest touches at once.

    ``layout``: S3 is assumed to have partitioned the archive at its first-level folders
    (KIC9[:4], campaign, sector), each with its own request rate; ``single``: the whole
    archive tree is one partition (the pessimistic reading).
    """
    if model == "single":
        return 1.0
    per_prefix = archive.n_products / archive.key_prefixes
    return min(float(archive.key_prefixes), window_products / per_prefix + 1)


def waves(tasks: int, workers: int) -> int:
    """Rounds of tasks a cluster of ``workers`` runs (one task a worker at a time)."""
    return math.ceil(tasks / max(1, workers))


def ingest_phases(
    archive: Archive,
    workers: int,
    rates: Rates,
    limits: Limits,
    prefix_model: PrefixModel = "layout",
    design: Design = DESIGN,
) -> tuple[Phase, ...]:
    """The ingest's phases: read pass, the driver's cross-match, write pass."""
    n = archive.n_products
    size = partition_size(n, workers, design)
    partitions = math.ceil(n / size)
    t_product = seconds_per_product(archive, rates)
    window = min(n, workers * size)
    prefixes = active_prefixes(archive, window, prefix_model)
    packs = partitions * math.ceil(size / design.pack_products)
    read_tasks = design.tasks_per_partition * partitions
    read = Phase(
        name="read",
        bounds={
            "worker CPU": waves(partitions, workers) * size * t_product + limits.fixed_s_per_phase,
            "network/instance": n
            * archive.mean_product_bytes
            / (workers * limits.network_bytes_per_s_per_worker),
            "S3 GET/prefix (archive)": n / (limits.s3_get_per_prefix_per_s * prefixes),
            "S3 PUT/prefix (store)": packs
            / (limits.s3_put_per_prefix_per_s * limits.store_partitions),
            "scheduler task rate": read_tasks * limits.scheduler_s_per_task,
        },
        tasks=read_tasks,
        puts_store=packs,
        gets_source=n,
    )
    match = Phase(
        name="cross-match",
        bounds={},
        serial_s=n * rates.cross_match_s_per_product,
    )
    chunks = math.ceil(archive.n_stars / design.star_chunk)
    per_chunk = n / chunks
    chunk_puts = (
        design.arrays_per_time_chunk * archive.time_chunks_per_star_chunk + design.records_per_chunk
    )
    write = Phase(
        name="write",
        bounds={
            "worker CPU": waves(chunks, workers) * per_chunk / rates.write_products_per_s
            + limits.fixed_s_per_phase,
            "S3 GET/prefix (store)": n / (limits.s3_get_per_prefix_per_s * limits.store_partitions),
            "S3 PUT/prefix (store)": chunks
            * chunk_puts
            / (limits.s3_put_per_prefix_per_s * limits.store_partitions),
            "scheduler task rate": chunks * limits.scheduler_s_per_task,
        },
        tasks=chunks,
        gets_store=n,
        puts_store=chunks * chunk_puts,
    )
    return read, match, write


def mast_calls(archive: Archive, limits: Limits) -> int:
    """MAST calls of the features stage's TIC lookup (``features/stellar.py``)."""
    if archive.stellar_lookup == "cone":
        return archive.n_stars
    return math.ceil(archive.n_stars / limits.mast_batch)


def features_phases(
    archive: Archive,
    workers: int,
    rates: Rates,
    limits: Limits,
    stellar: StellarSource = "mast",
    design: Design = DESIGN,
) -> tuple[Phase, ...]:
    """The features stage's phases: the driver's catalogue lookup, then the star chunks."""
    lookup_s = 0.0
    if stellar == "mast":
        lookup_s = (
            mast_calls(archive, limits) * limits.mast_seconds_per_call / limits.mast_concurrency
        )
    # the cluster is asked for only after the lookup (features/pipeline.py: _plan, then client)
    lookup = Phase(name="stellar lookup", bounds={}, serial_s=lookup_s, workers_billed=False)
    chunks = math.ceil(archive.n_stars / design.star_chunk)
    stars_per_chunk = archive.n_stars / chunks
    per_star = features_seconds_per_star(archive, rates)
    cube_gets = chunks * design.arrays_per_time_chunk * archive.time_chunks_per_star_chunk
    puts = chunks * (design.features_variables + design.features_records_per_chunk)
    compute = Phase(
        name="features",
        bounds={
            "worker CPU": waves(chunks, workers) * stars_per_chunk * per_star
            + limits.fixed_s_per_phase,
            "S3 GET/prefix (store)": cube_gets
            / (limits.s3_get_per_prefix_per_s * limits.store_partitions),
            "S3 PUT/prefix (store)": puts
            / (limits.s3_put_per_prefix_per_s * limits.store_partitions),
            "scheduler task rate": chunks * limits.scheduler_s_per_task,
        },
        tasks=chunks,
        gets_store=cube_gets,
        puts_store=puts,
    )
    return lookup, compute


def stage_result(
    archive: Archive,
    stage: str,
    workers: int,
    phases: Sequence[Phase],
    limits: Limits,
    *,
    store_gb: float,
    scheduler_peak_bytes: float,
    driver_peak_bytes: float,
) -> StageResult:
    """Totals of a stage's phases: wall time, worker-hours and costs."""
    wall = sum(p.wall_s for p in phases)
    billed = sum(p.wall_s for p in phases if p.workers_billed)
    worker_hours = workers * billed / HOUR
    gets = sum(p.gets_store for p in phases)
    puts = sum(p.puts_store for p in phases)
    return StageResult(
        archive=archive.name,
        stage=stage,
        workers=workers,
        phases=tuple(phases),
        wall_s=wall,
        worker_hours=worker_hours,
        compute_usd=worker_hours * limits.price_per_vcpu_hour,
        driver_usd=wall / HOUR * limits.driver_vcpus * limits.price_per_vcpu_hour,
        requests_usd=gets / 1e3 * limits.s3_get_usd_per_1000
        + puts / 1e3 * limits.s3_put_usd_per_1000,
        source_gets=sum(p.gets_source for p in phases),
        store_gb=store_gb,
        scheduler_peak_bytes=scheduler_peak_bytes,
        driver_peak_bytes=driver_peak_bytes,
    )


def ingest(
    archive: Archive,
    workers: int,
    rates: Rates = BENCH_RATES,
    limits: Limits = Limits(),
    prefix_model: PrefixModel = "layout",
) -> StageResult:
    """The ingest of a whole archive on ``workers`` workers."""
    phases = ingest_phases(archive, workers, rates, limits, prefix_model)
    read = phases[0]
    # the bag's graph holds every (URL, staged place) item: ~150 B pickled each
    scheduler = read.tasks * limits.scheduler_bytes_per_task + archive.n_products * 150
    return stage_result(
        archive,
        "ingest",
        workers,
        phases,
        limits,
        store_gb=archive.n_products * rates.store_bytes_per_product / GB,
        scheduler_peak_bytes=scheduler,
        driver_peak_bytes=archive.n_products * rates.driver_bytes_per_product,
    )


def features(
    archive: Archive,
    workers: int,
    rates: Rates = BENCH_RATES,
    limits: Limits = Limits(),
    stellar: StellarSource = "mast",
) -> StageResult:
    """The features stage of a whole archive's cube on ``workers`` workers."""
    phases = features_phases(archive, workers, rates, limits, stellar)
    chunks = phases[-1].tasks
    # each task carries its products' names (the chunk's fingerprint): ~100 B each
    scheduler = chunks * limits.scheduler_bytes_per_task + archive.n_products * 100
    return stage_result(
        archive,
        "features",
        workers,
        phases,
        limits,
        store_gb=0.0,
        scheduler_peak_bytes=scheduler,
        driver_peak_bytes=archive.n_products * 100 + archive.n_stars * 1e3,
    )


def sweep(
    archives: Iterable[Archive],
    workers: Iterable[int],
    rates: Rates = BENCH_RATES,
    limits: Limits = Limits(),
    *,
    stellar: StellarSource = "mast",
    prefix_model: PrefixModel = "layout",
) -> list[StageResult]:
    """Every archive × stage × worker count."""
    results = []
    for archive in archives:
        for count in workers:
            results.append(ingest(archive, count, rates, limits, prefix_model))
            results.append(features(archive, count, rates, limits, stellar))
    return results


# --------------------------------------------------------------------- where it breaks first


@dataclasses.dataclass(frozen=True)
class Break:
    """The first worker count at which a phase stops being bound by worker CPU."""

    archive: str
    phase: str
    workers: int
    limit: str
    wall_s: float  # the phase's wall time there
    floor_s: float  # the phase's shortest wall time at any worker count: what no cluster beats
    floor_workers: int  # where that is reached


def first_breaks(
    archives: Iterable[Archive],
    rates: Rates = BENCH_RATES,
    limits: Limits = Limits(),
    *,
    stellar: StellarSource = "mast",
    prefix_model: PrefixModel = "layout",
    max_workers: int = 65_536,
) -> list[Break]:
    """For every archive and phase, the smallest power-of-two worker count at which a limit
    other than worker CPU sets the phase's wall time (serial driver phases: from 1 worker),
    and the shortest wall time the phase reaches at any power of two up to ``max_workers``.
    """
    found: list[Break] = []
    counts = [2**k for k in range(int(math.log2(max_workers)) + 1)]
    for archive in archives:
        table = [
            ingest_phases(archive, w, rates, limits, prefix_model)
            + features_phases(archive, w, rates, limits, stellar)
            for w in counts
        ]
        for index, phase in enumerate(table[0]):
            walls = [row[index].wall_s for row in table]
            best = min(range(len(counts)), key=lambda i: (walls[i], counts[i]))
            if not phase.bounds:
                if phase.serial_s > 0:
                    found.append(
                        Break(archive.name, phase.name, 1, SERIAL, phase.wall_s, phase.wall_s, 1)
                    )
                continue
            for position, count in enumerate(counts):
                at = table[position][index]
                if at.binding != "worker CPU":
                    found.append(
                        Break(
                            archive.name,
                            at.name,
                            count,
                            at.binding,
                            at.wall_s,
                            walls[best],
                            counts[best],
                        )
                    )
                    break
    return found


def crossover(
    archive: Archive,
    phase: str,
    limit: str,
    rates: Rates = BENCH_RATES,
    limits: Limits = Limits(),
    prefix_model: PrefixModel = "layout",
    max_workers: int = 65_536,
) -> int | None:
    """The smallest power-of-two worker count at which ``limit`` allows an ingest ``phase``
    no more than its worker CPU does (``None``: never up to ``max_workers``).
    """
    for k in range(int(math.log2(max_workers)) + 1):
        phases = ingest_phases(archive, 2**k, rates, limits, prefix_model)
        bounds = next(p for p in phases if p.name == phase).bounds
        if bounds[limit] >= bounds["worker CPU"]:
            return 2**k
    return None


# ---------------------------------------------------------------------------------- output


def format_seconds(seconds: float) -> str:
    """A duration in s, min, h or days."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * HOUR:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * HOUR:
        return f"{seconds / HOUR:.1f} h"
    return f"{seconds / 86_400:.1f} d"


def format_usd(usd: float) -> str:
    """Dollars, to the cent below $100."""
    return f"${usd:,.2f}" if usd < 100 else f"${usd:,.0f}"


RESULT_HEADER = (
    "Archive",
    "Stage",
    "Workers",
    "Wall",
    "Worker-hours",
    "Cost (USD)",
    "Binding limit (phase)",
)


def result_rows(results: Iterable[StageResult]) -> list[tuple[str, ...]]:
    """One row per archive × stage × worker count."""
    return [
        (
            r.archive,
            r.stage,
            f"{r.workers:,}",
            format_seconds(r.wall_s),
            f"{r.worker_hours:,.1f}",
            format_usd(r.total_usd),
            r.binding,
        )
        for r in results
    ]


ARCHIVE_HEADER = (
    "Archive",
    "Products",
    "Mean size",
    "Stars",
    "Points/star",
    "Features s/star/core",
    "Read-pass ms/product",
    "Store",
)


def archive_rows(archives: Iterable[Archive], rates: Rates) -> list[tuple[str, ...]]:
    """One row per archive: the inputs and the per-item costs the model derives."""
    return [
        (
            a.name,
            f"{a.n_products / 1e6:.2f} M",
            f"{a.mean_product_bytes / MB:.2f} MB",
            f"{a.n_stars / 1e3:,.0f} k",
            f"{a.mean_points_per_star:,.0f}",
            f"{features_seconds_per_star(a, rates):.2f}",
            f"{1e3 * seconds_per_product(a, rates):.1f}",
            f"{a.n_products * rates.store_bytes_per_product / GB:,.0f} GB",
        )
        for a in archives
    ]


PHASE_HEADER = ("Archive", "Stage", "Workers", "Phase", "Serial", "Limits (seconds each allows)")


def phase_rows(results: Iterable[StageResult]) -> list[tuple[str, ...]]:
    """One row per phase: the time each limit allows it (the binding one is the largest)."""
    return [
        (
            r.archive,
            r.stage,
            f"{r.workers:,}",
            p.name,
            format_seconds(p.serial_s),
            "; ".join(f"{k} {format_seconds(v)}" for k, v in p.bounds.items()) or "-",
        )
        for r in results
        for p in r.phases
    ]


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A GitHub Markdown table (numbers right-aligned)."""
    rows = list(rows)
    align = ["---:" if all(_numeric(r[i]) for r in rows) else "---" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _numeric(text: str) -> bool:
    return bool(text) and (text[0].isdigit() or text[0] == "$")


def text_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """An aligned plain-text table."""
    rows = [tuple(header), *rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)


def break_lines(
    archives: Sequence[Archive],
    rates: Rates,
    limits: Limits,
    *,
    stellar: StellarSource,
    prefix_model: PrefixModel,
) -> list[str]:
    """Where the design breaks first, with the numbers, most urgent first."""
    breaks = first_breaks(archives, rates, limits, stellar=stellar, prefix_model=prefix_model)
    lines = []
    for b in sorted((b for b in breaks if b.limit != SERIAL), key=lambda b: b.workers):
        where = (
            "at any worker count"
            if b.workers == 1
            else f"from {b.workers:,} workers ({format_seconds(b.wall_s)} there)"
        )
        lines.append(
            f"{b.archive}, {b.phase} phase: {b.limit} binds {where}; the phase never takes"
            f" less than {format_seconds(b.floor_s)} (reached at {b.floor_workers:,} workers)."
        )
    serial = [b for b in breaks if b.limit == SERIAL and b.wall_s > 600]
    for b in sorted(serial, key=lambda b: -b.wall_s):
        lines.append(
            f"{b.archive}, {b.phase}: {format_seconds(b.wall_s)} of serial driver work whatever"
            " the cluster (Amdahl)."
        )
    lines.extend(_design_notes(archives, rates, limits, prefix_model))
    return lines


def _design_notes(
    archives: Sequence[Archive], rates: Rates, limits: Limits, prefix_model: PrefixModel
) -> list[str]:
    notes = []
    write_rate = rates.write_products_per_s
    notes.append(
        f"Write pass: one ranged GET per staged product from one new store prefix: "
        f"{limits.s3_get_per_prefix_per_s:,.0f} GET/s ÷ {write_rate:,.0f} products/s a worker"
        f" = {limits.s3_get_per_prefix_per_s / write_rate:.0f} workers saturate it until S3"
        " partitions the prefix (30–60 min). Fix: read whole packs, or stage packs per star"
        " chunk."
    )
    worst = max(archives, key=lambda a: a.mean_product_bytes)
    demand = min(rates.read_mb_per_s * MB, worst.mean_product_bytes * rates.read_products_per_s)
    share = limits.network_bytes_per_s_per_worker
    notes.append(
        f"Network: a read-pass worker pulls {demand / MB:.0f} MB/s of {worst.name} products;"
        f" a worker's share of a {limits.instance_type} ({limits.instance_network_gbps:g} Gbps,"
        f" {limits.instance_vcpus} workers) is {share / MB:.0f} MB/s"
        + (" — the instance's NIC binds before its cores." if demand > share else ".")
    )
    for a in archives:
        per_prefix = a.n_products / a.key_prefixes
        size = DESIGN.max_partition
        # sorted manifest: a prefix is read by per_prefix / size partitions at once
        rate = min(1 / seconds_per_product(a, rates), rates.read_products_per_s)
        demand_per_prefix = rate * per_prefix / size
        if prefix_model == "single":
            break
        if demand_per_prefix > limits.s3_get_per_prefix_per_s:
            notes.append(
                f"{a.name}: the manifest is sorted by URL, so each key prefix"
                f" ({per_prefix:,.0f} products) is read by ~{per_prefix / size:.0f} tasks at once"
                f" once enough workers run: {demand_per_prefix:,.0f} GET/s against"
                f" {limits.s3_get_per_prefix_per_s:,.0f} (the archive GET limit above). Fix:"
                " interleave the manifest across prefixes, so that all of them share the load."
            )
    one = max(archives, key=lambda a: 1 / seconds_per_product(a, rates))
    notes.append(
        "If S3 keeps each archive's tree in one partition (not documented for stpubdata), the"
        f" archive GET limit binds from {limits.s3_get_per_prefix_per_s * seconds_per_product(one, rates):,.0f}"
        f" workers ({one.name})."
    )
    for a in archives:
        at = crossover(a, "read", "scheduler task rate", rates, limits, prefix_model)
        if at is None:
            continue
        phase = ingest_phases(a, at, rates, limits, prefix_model)[0]
        shrink = math.ceil(a.n_products / (DESIGN.partitions_per_worker * DESIGN.max_partition))
        notes.append(
            f"Scheduler: the {a.name} read pass is {phase.tasks:,} tasks at {at:,} workers"
            f" ({1e3 * limits.scheduler_s_per_task:g} ms each): the task rate catches up with"
            f" the CPU there; beyond {shrink:,} workers the partitions shrink below"
            f" {DESIGN.max_partition} products and more workers make more tasks. Its graph holds"
            f" ~{ingest(a, at, rates, limits, prefix_model).scheduler_peak_bytes / GB:.1f} GB"
            " (every product's URL is in it)."
        )
        break
    biggest = max(archives, key=lambda a: math.ceil(a.n_stars / DESIGN.star_chunk))
    smallest = min(archives, key=lambda a: math.ceil(a.n_stars / DESIGN.star_chunk))
    notes.append(
        "Task granularity: the write pass and the features stage have one task per star chunk"
        f" of {DESIGN.star_chunk} stars ({math.ceil(smallest.n_stars / DESIGN.star_chunk):,}"
        f" for {smallest.name} … {math.ceil(biggest.n_stars / DESIGN.star_chunk):,} for"
        f" {biggest.name}): workers beyond that idle, and a few waves leave a tail."
    )
    total = sum(a.n_products for a in archives)
    notes.append(
        f"Driver memory: {rates.driver_bytes_per_product / 1e3:.1f} kB a product (every"
        " product's row comes back for the cross-match): "
        + ", ".join(
            f"{a.name} {a.n_products * rates.driver_bytes_per_product / GB:.1f} GB"
            for a in archives
        )
        + f"; one cube of all three {total * rates.driver_bytes_per_product / GB:.0f} GB."
    )
    return notes


def render(
    results: Sequence[StageResult],
    archives: Sequence[Archive],
    rates: Rates,
    limits: Limits,
    *,
    markdown: bool,
    stellar: StellarSource,
    prefix_model: PrefixModel,
    phases: bool = False,
) -> str:
    """The report: archive inputs, the results table, where the design breaks first (and,
    with ``phases``, every phase's limits).
    """
    table = markdown_table if markdown else text_table
    breaks = break_lines(archives, rates, limits, stellar=stellar, prefix_model=prefix_model)
    bullet = "- " if markdown else "* "
    parts = [
        ("#### Archives (inputs)" if markdown else "Archives (inputs)"),
        "",
        table(ARCHIVE_HEADER, archive_rows(archives, rates)),
        "",
        ("#### Wall time, worker-hours and cost" if markdown else "Wall time, worker-hours, cost"),
        "",
        table(RESULT_HEADER, result_rows(results)),
        "",
        ("#### Where the design breaks first" if markdown else "Where the design breaks first"),
        "",
        *(bullet + line for line in breaks),
    ]
    if phases:
        parts += ["", "Phases", "", table(PHASE_HEADER, phase_rows(results))]
    return "\n".join(parts)


# ---------------------------------------------------------------------------------- the CLI


def load_rates(path: str | None, preset: str) -> Rates:
    """The preset's rates, with the keys of a JSON file (if given) replacing them.

    Raises
    ------
    SystemExit
        For a file that cannot be read, is not a JSON object, or names unknown keys.
    """
    rates = PRESETS[preset]
    if path is None:
        return rates
    try:
        values: Any = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"--rates {path}: cannot be read as JSON ({exc})") from exc
    if not isinstance(values, dict):
        raise SystemExit(f"--rates {path}: expected a JSON object of rate names to numbers")
    known = {f.name for f in dataclasses.fields(Rates)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise SystemExit(f"--rates {path}: unknown keys {unknown}; known: {sorted(known)}")
    for key, value in values.items():
        if key != "source" and not (isinstance(value, int | float) and value > 0):
            raise SystemExit(f"--rates {path}: {key} must be a positive number, not {value!r}")
    return dataclasses.replace(rates, **values)


def parse_workers(text: str) -> list[int]:
    """``"8,64,256"`` → ``[8, 64, 256]`` (positive, sorted, unique)."""
    try:
        counts = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a list of worker counts: {text!r}") from exc
    if not counts or counts[0] < 1:
        raise argparse.ArgumentTypeError(f"worker counts must be positive: {text!r}")
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    """Print the projection; 0 on success."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--workers", type=parse_workers, default=[8, 64, 256, 1024], help="e.g. 8,64,256,1024"
    )
    parser.add_argument("--markdown", action="store_true", help="Markdown tables for the README")
    parser.add_argument("--rates", help="JSON file of rates (keys of Rates) replacing the preset's")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="bench-ingest")
    parser.add_argument("--print-rates", action="store_true", help="print the rates as JSON, exit")
    parser.add_argument(
        "--stellar",
        choices=["mast", "table", "none"],
        default="mast",
        help="the features stage's --stellar (mast: TIC lookups at MAST from the driver)",
    )
    parser.add_argument(
        "--prefixes",
        choices=["layout", "single"],
        default="layout",
        help="S3 partitions of the archive: one per first-level key folder, or one in all",
    )
    parser.add_argument("--phases", action="store_true", help="also every phase's limits")
    parser.add_argument("--price-per-vcpu-hour", type=float, help="USD (default: c7a on-demand)")
    args = parser.parse_args(argv)
    rates = load_rates(args.rates, args.preset)
    if args.print_rates:
        print(json.dumps(dataclasses.asdict(rates), indent=1))
        return 0
    limits = Limits()
    if args.price_per_vcpu_hour is not None:
        limits = dataclasses.replace(limits, price_per_vcpu_hour=args.price_per_vcpu_hour)
    results = sweep(
        ARCHIVES, args.workers, rates, limits, stellar=args.stellar, prefix_model=args.prefixes
    )
    print(
        render(
            results,
            ARCHIVES,
            rates,
            limits,
            markdown=args.markdown,
            stellar=args.stellar,
            prefix_model=args.prefixes,
            phases=args.phases,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
