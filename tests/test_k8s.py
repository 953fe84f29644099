"""Kubernetes manifests: rendered by pure functions, validated offline against the CRDs of
dask-kubernetes and the strict Kubernetes OpenAPI schemas; the Dockerfile."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from starskope_dask import __version__, k8s
from starskope_dask.cli import main
from starskope_dask.cluster import WORKER_MALLOC_ENV
from starskope_dask.config import RunConfig, load_run_config
from starskope_dask.errors import ConfigError, NotAStoreError

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = ROOT / "k8s" / "pipeline.yaml"
DOCKERFILE = ROOT / "Dockerfile"


@pytest.fixture(scope="module")
def run() -> RunConfig:
    return load_run_config(PIPELINE)


@pytest.fixture(scope="module")
def text() -> str:
    return PIPELINE.read_text()


@pytest.fixture(scope="module")
def docs(run: RunConfig, text: str) -> dict[str, list[dict[str, Any]]]:
    return k8s.render_all(run, text)


def _with(run: RunConfig, **kubernetes: Any) -> RunConfig:
    return dataclasses.replace(run, kubernetes=dataclasses.replace(run.kubernetes, **kubernetes))


def _pod_specs(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    spec = doc["spec"]
    if doc["kind"] == "DaskJob":
        cluster = spec["cluster"]["spec"]
        return {
            "runner": spec["job"]["spec"],
            "scheduler": cluster["scheduler"]["spec"],
            "worker": cluster["worker"]["spec"],
        }
    return {"scheduler": spec["scheduler"]["spec"], "worker": spec["worker"]["spec"]}


def _clusters(docs: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [d for ds in docs.values() for d in ds if d["kind"] in ("DaskJob", "DaskCluster")]


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container.get("env", [])}


# ------------------------------------------------------------------------- validation


def test_every_rendered_document_validates(docs: dict[str, list[dict[str, Any]]]) -> None:
    import kubernetes_validate

    kinds = []
    for name, file_docs in docs.items():
        for doc in file_docs:
            assert k8s.validate_manifest(doc) == [], (name, doc["kind"])
            kinds.append(doc["kind"])
            if not doc["apiVersion"].startswith("kubernetes.dask.org/"):
                # the package's own entry point agrees for the built-in kinds
                kubernetes_validate.validate(doc, k8s.KUBERNETES_VERSION, strict=True)
    assert sorted(kinds) == sorted(
        [
            "ServiceAccount",
            "ConfigMap",
            "DaskJob",
            "ServiceAccount",
            "DaskCluster",
            "DaskAutoscaler",
        ]
    )


def _worker(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["spec"]["cluster"]["spec"]["worker"]


def _worker_container(doc: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = _worker(doc)["spec"]["containers"][0]
    return container


def _rename(mapping: dict[str, Any], old: str, new: str) -> None:
    mapping[new] = mapping.pop(old)


BREAKAGES: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "typo replica": (
        lambda d: _rename(_worker(d), "replicas", "replica"),
        "'replica' was unexpected",
    ),
    "replicas a string": (
        lambda d: _worker(d).__setitem__("replicas", "8"),
        "worker.replicas: '8' is not of type 'integer'",
    ),
    "unknown container key": (
        lambda d: _worker_container(d).__setitem__("imagePullPolicyy", "Always"),
        "'imagePullPolicyy' was unexpected",
    ),
    "memory an integer": (
        lambda d: _worker_container(d)["resources"]["limits"].__setitem__("memory", 4),
        "limits.memory: 4 is not of type 'string'",
    ),
    "integer probe port (dask-kubernetes#778)": (
        lambda d: d["spec"]["cluster"]["spec"]["scheduler"]["spec"]["containers"][0][
            "readinessProbe"
        ]["httpGet"].__setitem__("port", 8787),
        "httpGet.port: 8787 is not of type 'string'",
    ),
    "port out of int32": (
        lambda d: _worker_container(d)["ports"][0].__setitem__("containerPort", 2**40),
        "is not a 'int32'",
    ),
    "metadata typo": (
        lambda d: _rename(d["metadata"], "labels", "label"),
        "('label' was unexpected) [Kubernetes",
    ),
    "a field the CRD's PodSpec lacks (pruned by the API server)": (
        lambda d: d["spec"]["job"]["spec"].__setitem__("hostUsers", False),
        "('hostUsers' was unexpected) [CRD daskjobs.kubernetes.dask.org]",
    ),
    "no containers": (
        lambda d: d["spec"]["job"]["spec"].pop("containers"),
        "'containers' is a required property",
    ),
    "AWS key in the environment": (
        lambda d: _worker_container(d)["env"].append(
            {"name": "AWS_SECRET_ACCESS_KEY", "value": "wJalrXUtnFEMI/K7MDENG"}
        ),
        "environment variable AWS_SECRET_ACCESS_KEY",
    ),
    "a token's value": (
        lambda d: _worker_container(d)["env"].append({"name": "HF_TOKEN", "value": "hf_abc"}),
        "HF_TOKEN holds a literal value",
    ),
    "an access key id in an argument": (
        lambda d: _worker_container(d)["args"].append("AKIAIOSFODNN7EXAMPLE"),
        "a credential-looking value",
    ),
}


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_the_validator_catches_a_broken_document(
    docs: dict[str, list[dict[str, Any]]], breakage: str
) -> None:
    change, expected = BREAKAGES[breakage]
    doc = copy.deepcopy(docs["daskjob.yaml"][2])
    assert doc["kind"] == "DaskJob"
    change(doc)
    problems = k8s.validate_manifest(doc)
    assert any(expected in p for p in problems), problems
    assert all(p.startswith("DaskJob/starskope-run: ") for p in problems)


def test_the_validator_catches_broken_core_objects(docs: dict[str, list[dict[str, Any]]]) -> None:
    account, configmap = (copy.deepcopy(d) for d in docs["daskjob.yaml"][:2])
    account["automountServiceAccountToken"] = "no"
    assert any("is not of type 'boolean'" in p for p in k8s.validate_manifest(account))
    configmap["data"]["n"] = 3
    assert any("data.n: 3 is not of type" in p for p in k8s.validate_manifest(configmap))
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {}}
    assert any("a Secret" in p for p in k8s.validate_manifest(secret))
    assert k8s.validate_manifest({"apiVersion": "kubernetes.dask.org/v1", "kind": "DaskJobs"})
    assert k8s.validate_manifest({"apiVersion": "v9", "kind": "Nothing", "metadata": {}})


def test_openapi_nullable_int_or_string_and_preserve_unknown_fields() -> None:
    import jsonschema

    schema = k8s.openapi_to_json_schema(
        {
            "type": "object",
            "properties": {
                "a": {"type": "string", "nullable": True},
                "b": {"x-kubernetes-int-or-string": True},
                "free": {
                    "type": "object",
                    "properties": {"x": {"type": "integer"}},
                    "x-kubernetes-preserve-unknown-fields": True,
                },
                "n": {"type": "integer", "minimum": 0, "exclusiveMinimum": True},
            },
        }
    )
    ok = jsonschema.Draft202012Validator(schema)
    assert ok.is_valid({"a": None, "b": 3, "free": {"x": 1, "other": 2}, "n": 1})
    assert ok.is_valid({"b": "50%"})
    assert not ok.is_valid({"n": 0})
    assert not ok.is_valid({"c": 1})  # pruned by the API server: refused here


# ------------------------------------------------------------------------- content


def test_no_secret_anywhere_in_the_rendered_output(run: RunConfig, text: str) -> None:
    rendered = "".join(k8s.render_files(run, text).values())
    for word in ("kind: Secret", "secretKeyRef", "secretRef", "AWS_SECRET_ACCESS_KEY",
                 "AWS_ACCESS_KEY_ID", "AWS_SESSION_TOKEN", "password"):  # fmt: skip
        assert word not in rendered
    assert not re.search(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b", rendered)
    for doc in yaml.safe_load_all(rendered):
        assert k8s.secret_problems(doc) == []
    with pytest.raises(ConfigError, match="credential"):
        k8s.render_configmap(run, text + "\n# aws_secret_access_key: wJalrXUtnFEMI\n")


def test_irsa_annotation_iff_role_arn(run: RunConfig, text: str) -> None:
    assert run.kubernetes.role_arn == "arn:aws:iam::123456789012:role/starskope-store"
    account = k8s.render_service_account(run.kubernetes)
    assert account["metadata"]["annotations"] == {
        "eks.amazonaws.com/role-arn": run.kubernetes.role_arn
    }
    bare = _with(run, role_arn="")
    assert "annotations" not in k8s.render_service_account(bare.kubernetes)["metadata"]
    assert "eks.amazonaws.com" not in "".join(k8s.render_files(bare, text).values())
    for doc in _clusters(k8s.render_all(bare, text)):
        for spec in _pod_specs(doc).values():
            assert spec["serviceAccountName"] == run.kubernetes.service_account


def test_workers_get_malloc_env_sized_resources_and_region(
    docs: dict[str, list[dict[str, Any]]], run: RunConfig
) -> None:
    import dask.config
    from dask.utils import parse_bytes

    clusters = _clusters(docs)
    assert len(clusters) == 2
    for doc in clusters:
        for role, spec in _pod_specs(doc).items():
            (container,) = spec["containers"]
            env = _env(container)
            assert env["AWS_DEFAULT_REGION"] == env["AWS_REGION"] == "us-east-1"
            resources = container["resources"]
            assert resources["requests"] == resources["limits"], role
            assert set(resources["limits"]) == {"cpu", "memory"}
            assert spec["securityContext"]["runAsNonRoot"] is True
            assert spec["securityContext"]["runAsUser"] == k8s.RUN_AS_USER
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
            assert any(v["name"] == "tmp" and "emptyDir" in v for v in spec["volumes"])
            assert (k8s.MALLOC_ENV_VARIABLE in env) == (role == "worker")
        worker = _pod_specs(doc)["worker"]["containers"][0]
        environ = json.loads(_env(worker)[k8s.MALLOC_ENV_VARIABLE])
        assert environ == WORKER_MALLOC_ENV
        # and Dask reads the variable as the nanny's pre-spawn environment
        parsed = dask.config.collect_env(
            {k8s.MALLOC_ENV_VARIABLE: _env(worker)[k8s.MALLOC_ENV_VARIABLE]}
        )
        spawn = dask.config.get("distributed.nanny.pre-spawn-environ", config=parsed)
        assert spawn == WORKER_MALLOC_ENV
        args = worker["args"]
        assert args[:2] == ["dask", "worker"]
        assert args[args.index("--nthreads") + 1] == str(run.kubernetes.worker_threads)
        assert args[args.index("--name") + 1] == "$(DASK_WORKER_NAME)"
        limit = parse_bytes(args[args.index("--memory-limit") + 1])
        container_limit = parse_bytes(worker["resources"]["limits"]["memory"] + "B")
        assert container_limit == parse_bytes(run.kubernetes.worker_memory) == 4 * 2**30
        assert container_limit - limit >= k8s.MIN_HEADROOM_BYTES
        # sized from the measured peak RSS: every thread's peak below Dask's pause threshold
        threads = run.kubernetes.worker_threads
        assert threads * k8s.PEAK_WORKER_RSS_BYTES < k8s.DASK_PAUSE_FRACTION * limit
        assert worker["resources"]["limits"]["cpu"] == run.kubernetes.worker_cpu
        scheduler = _pod_specs(doc)["scheduler"]["containers"][0]
        assert scheduler["args"][:2] == ["dask", "scheduler"]
        assert [(p["name"], p["containerPort"]) for p in scheduler["ports"]] == [
            ("tcp-comm", 8786),
            ("http-dashboard", 8787),
        ]
        assert scheduler["readinessProbe"]["httpGet"] == {
            "port": "http-dashboard",
            "path": "/health",
        }


def test_the_daskjob_runs_the_pipeline_from_its_configmap(
    docs: dict[str, list[dict[str, Any]]], run: RunConfig, text: str, tmp_path: Path
) -> None:
    _account, configmap, job = docs["daskjob.yaml"]
    assert job["metadata"]["name"] == k8s.job_name(run.kubernetes) == "starskope-run"
    assert run.pipeline.scheduler_address == k8s.daskjob_scheduler_address(run.kubernetes)
    service = job["spec"]["cluster"]["spec"]["scheduler"]["service"]
    assert service["selector"]["dask.org/cluster-name"] == "starskope-run"
    runner_spec = job["spec"]["job"]["spec"]
    assert runner_spec["restartPolicy"] == "OnFailure"
    (runner,) = runner_spec["containers"]
    assert runner["args"] == [
        "starskope",
        "run",
        "--allow-failures",
        "/etc/starskope/pipeline.yaml",
    ]
    mount = next(m for m in runner["volumeMounts"] if m["mountPath"] == "/etc/starskope")
    volume = next(v for v in runner_spec["volumes"] if v["name"] == mount["name"])
    assert volume["configMap"]["name"] == configmap["metadata"]["name"] == run.kubernetes.config_map
    assert configmap["data"]["pipeline.yaml"] == text
    # the runner pod reads back the same pipeline
    mounted = tmp_path / "pipeline.yaml"
    mounted.write_text(configmap["data"]["pipeline.yaml"])
    again = load_run_config(mounted)
    assert again.pipeline == run.pipeline and again.kubernetes == run.kubernetes
    assert run.pipeline.workdir == "s3://YOUR-BUCKET/starskope/run-1"
    assert run.discover.prefixes == ("s3://stpubdata/k2/public/lightcurves/c5/",)
    assert run.storage.anon is True and run.storage.region == "us-east-1"
    autoscaler = docs["daskcluster.yaml"][2]
    assert autoscaler["spec"] == {
        "cluster": docs["daskcluster.yaml"][1]["metadata"]["name"],
        "minimum": run.kubernetes.min_workers,
        "maximum": run.kubernetes.max_workers,
    }
    for file_docs in docs.values():
        assert {d["metadata"]["namespace"] for d in file_docs} == {run.kubernetes.namespace}


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"workdir": "starskope-run"}, "local path"),
        ({"scheduler_address": "tcp://elsewhere:8786"}, "DaskJob's scheduler is"),
        ({"cluster": "slurm"}, "brings its own scheduler"),
    ],
)
def test_render_refuses_a_pipeline_that_cannot_run_in_a_daskjob(
    run: RunConfig, text: str, change: dict[str, str], match: str
) -> None:
    broken = dataclasses.replace(run, pipeline=dataclasses.replace(run.pipeline, **change))
    with pytest.raises(ConfigError, match=match):
        k8s.render_daskjob(broken, text)


def test_render_refuses_workers_smaller_than_the_measured_peak(run: RunConfig, text: str) -> None:
    with pytest.raises(ConfigError, match="measured peak"):
        k8s.render_all(_with(run, worker_memory="1GiB"), text)
    with pytest.raises(ConfigError, match="not 'auto'"):
        k8s.render_all(_with(run, worker_memory="auto"), text)
    assert (
        k8s.worker_memory_limit(_with(run, worker_memory="1GiB", worker_threads=1).kubernetes)
        == "768MiB"
    )
    assert k8s.quantity(3 * 2**29) == "1536Mi" and k8s.quantity(1000) == "1000"


def test_dump_round_trips_and_is_marked_generated(docs: dict[str, list[dict[str, Any]]]) -> None:
    for name, file_docs in docs.items():
        text = k8s.dump_manifests(file_docs, description=k8s.FILE_DESCRIPTIONS[name])
        assert text.startswith(k8s.GENERATED_MARKER)
        assert list(yaml.safe_load_all(text)) == file_docs
    # the ConfigMap's YAML stays a readable block
    assert "pipeline.yaml: |" in k8s.dump_manifests(docs["daskjob.yaml"])


def test_committed_manifests_are_what_render_writes_now() -> None:
    files = k8s.render_config_file(PIPELINE)
    assert sorted(files) == ["daskcluster.yaml", "daskjob.yaml"]
    for name, text in files.items():
        committed = (ROOT / "k8s" / name).read_text()
        assert committed == text, (
            f"k8s/{name} is stale: starskope k8s render --config k8s/pipeline.yaml"
        )


def test_cli_writes_the_files_and_refuses_a_foreign_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "manifests"
    args = ["k8s", "render", "--config", str(PIPELINE), "--out-dir", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(out / "daskjob.yaml"), str(out / "daskcluster.yaml")]
    assert (out / "daskjob.yaml").read_text() == (ROOT / "k8s" / "daskjob.yaml").read_text()
    assert main(args) == 0  # its own files are rewritten
    capsys.readouterr()
    (out / "daskcluster.yaml").write_text("# mine\nkind: DaskCluster\n")
    (out / "daskjob.yaml").write_text(k8s.GENERATED_MARKER + " (stale)\n")
    assert main(args) == 3
    err = capsys.readouterr().err
    assert "daskcluster.yaml exists and was not written by `starskope k8s render`" in err
    assert (out / "daskcluster.yaml").read_text() == "# mine\nkind: DaskCluster\n"
    assert (out / "daskjob.yaml").read_text().endswith("(stale)\n")  # nothing was written
    with pytest.raises(NotAStoreError):
        k8s.write_manifests({"daskcluster.yaml": "x"}, out)
    assert main(["k8s", "render", "--config", str(PIPELINE), "--stdout"]) == 0
    shown = capsys.readouterr().out
    assert [d["kind"] for d in yaml.safe_load_all(shown)] == [
        "ServiceAccount", "ConfigMap", "DaskJob", "ServiceAccount", "DaskCluster", "DaskAutoscaler"
    ]  # fmt: skip
    assert main(["k8s", "render", "--config", str(tmp_path / "none.yaml")]) == 2


def test_kubecluster_kwargs_match_make_cluster_spec(run: RunConfig) -> None:
    from dask_kubernetes.operator import make_cluster_spec

    kwargs = k8s.kubecluster_kwargs(run)
    assert set(kwargs) == {
        "name", "namespace", "image", "n_workers", "resources", "env", "worker_command"
    }  # fmt: skip
    theirs = make_cluster_spec(**{k: v for k, v in kwargs.items() if k != "namespace"})
    ours = k8s.render_daskcluster(run)
    assert theirs["metadata"]["name"] == ours["metadata"]["name"]
    assert theirs["spec"]["worker"]["replicas"] == ours["spec"]["worker"]["replicas"]
    (their_worker,) = theirs["spec"]["worker"]["spec"]["containers"]
    (our_worker,) = ours["spec"]["worker"]["spec"]["containers"]
    for key in ("name", "image", "args", "env", "resources", "ports"):
        assert their_worker[key] == our_worker[key], key
    assert theirs["spec"]["scheduler"]["service"] == ours["spec"]["scheduler"]["service"]


# ------------------------------------------------------------------------- the image


def _dockerfile_lines() -> list[str]:
    joined = DOCKERFILE.read_text().replace("\\\n", " ")
    return [
        line.strip()
        for line in joined.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def test_the_dockerfile_is_multi_stage_pinned_and_unprivileged() -> None:
    lines = _dockerfile_lines()
    bases = [line.split()[1] for line in lines if line.upper().startswith("FROM ")]
    assert len(bases) == 2
    for base in bases:
        assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", base), base
        assert "latest" not in base
    users = [line.split()[1] for line in lines if line.upper().startswith("USER ")]
    assert len(users) == 1
    uid, _, gid = users[0].partition(":")
    assert uid.isdigit() and int(uid) != 0 and int(uid) == k8s.RUN_AS_USER
    assert gid == "" or int(gid) == k8s.RUN_AS_USER
    assert not any(line.upper().startswith("ENTRYPOINT") for line in lines)
    assert 'ARG EXTRAS="train"' in lines
    assert f'ARG VERSION="{__version__}"' in lines
    names = [
        line.split()[1].split("=")[0] for line in lines if line.upper().startswith(("ARG ", "ENV "))
    ]
    assert not [n for n in names if re.search(r"TOKEN|SECRET|PASSWORD|KEY", n, re.IGNORECASE)]
    text = DOCKERFILE.read_text()
    assert "AWS_ACCESS_KEY_ID" not in text and "AWS_SECRET_ACCESS_KEY" not in text
    assert "--no-cache-dir" in text and "org.opencontainers.image.source" in text


def test_the_dockerignore_keeps_only_what_the_build_copies() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*"
    included = {p[1:] for p in patterns if p.startswith("!")}
    assert included == {"pyproject.toml", "README.md", "starskope_dask"}
    copied = {
        line.split()[1]
        for line in _dockerfile_lines()
        if line.startswith("COPY ") and "--from" not in line
    }
    assert copied <= included | {"pyproject.toml", "README.md", "starskope_dask"}
    assert {"**/__pycache__", "**/*.zarr"} <= set(patterns)


@pytest.mark.slow
def test_the_image_builds(tmp_path: Path) -> None:
    tool = shutil.which("podman") or shutil.which("buildah")
    if tool is None:
        pytest.skip(
            "neither buildah nor podman is installed: the Dockerfile is checked statically only"
        )
    tag = "localhost/starskope-dask:test"
    build = [tool, "build"] if tool.endswith("podman") else [tool, "bud"]
    # the slim variant (no TensorFlow) keeps the test to minutes; same stages otherwise
    subprocess.run(
        [*build, "--build-arg", "EXTRAS=", "-t", tag, "-f", str(DOCKERFILE), str(ROOT)],
        check=True,
        timeout=3600,
    )
    if tool.endswith("podman"):
        result = subprocess.run(
            [tool, "run", "--rm", "--read-only", tag, "sh", "-c",
             "id -u && starskope --version && dask worker --help >/dev/null && echo ok"],
            check=True, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert result.stdout.split()[0] == str(k8s.RUN_AS_USER)
        assert result.stdout.strip().endswith("ok")


def test_render_sees_the_file_as_the_pod_does(monkeypatch: pytest.MonkeyPatch) -> None:
    """A variable set in the rendering shell never reaches the pod (it gets the ConfigMap's
    text), so it must not change what is rendered or validated either.
    """
    from starskope_dask.k8s import render_config_file

    plain = render_config_file(ROOT / "k8s" / "pipeline.yaml")
    monkeypatch.setenv("DASK_STARSKOPE__KUBERNETES__WORKERS", "99")
    monkeypatch.setenv("DASK_STARSKOPE__PIPELINE__WORKDIR", "/local/only")
    assert render_config_file(ROOT / "k8s" / "pipeline.yaml") == plain
