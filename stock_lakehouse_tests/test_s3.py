"""Delta on a real MinIO over S3A: the same pipeline, the same results, and safe concurrent writers."""

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from stock_lakehouse.lakehouse.object_store import S3Location
from stock_lakehouse.lakehouse.reader import read_table
from stock_lakehouse.runs.materialize import run_materialize
from stock_lakehouse_tests.conftest import NVDA_SAMPLE, REPO

# Marked by their fixtures (conftest.py): minio, and spark for the tests that run the pipeline.


def s3(env) -> S3Location:
    return S3Location(endpoint=env["STOCK_LAKEHOUSE_S3_ENDPOINT"])


def test_pipeline_on_minio_equals_the_local_run(spark, minio, tmp_path, dagster_home, clean_env, monkeypatch):
    monkeypatch.setenv("STOCK_LAKEHOUSE_S3_ENDPOINT", minio["STOCK_LAKEHOUSE_S3_ENDPOINT"])
    rec = tmp_path / "rec"
    rec.mkdir()
    (rec / "nvda.json").write_bytes(NVDA_SAMPLE.read_bytes())
    runs = {}
    for name, root in (("local", str(tmp_path / "lake")), ("minio", "s3a://lake/t1")):
        ok, summary, error = run_materialize(
            ["NVDA"],
            date(2024, 3, 1),
            date(2024, 3, 12),
            {"source": "replay", "replay_dir": str(rec), "lake_root": root},
        )
        assert ok, error
        runs[name] = summary
    assert (
        runs["minio"].rows == runs["local"].rows == {"bronze": 7680, "silver": 7680, "gold": 8, "bi": 8, "signals": 8}
    )
    assert str(runs["minio"].metadata["gold"]["table_uri"]) == "s3a://lake/t1/gold/daily_kpis"
    for table in ("gold", "bi"):
        local = read_table(str(tmp_path / "lake"), table)
        remote = read_table("s3a://lake/t1", table, s3=s3(minio))
        pd.testing.assert_frame_equal(remote, local, check_exact=False, rtol=1e-12)
    # The landing zone is on the same store, byte for byte.
    bronze = read_table("s3a://lake/t1", "bronze", s3=s3(minio))
    (uri,) = set(bronze.payload_uri)
    assert uri.startswith("s3a://lake/t1/landing/TIME_SERIES_INTRADAY/NVDA/1min/2024-03/")
    bucket_key = uri.split("://", 1)[1].split("/", 1)
    body = s3(minio).boto3_client().get_object(Bucket=bucket_key[0], Key=bucket_key[1])["Body"].read()
    assert body == NVDA_SAMPLE.read_bytes()
    # Secrets stay out of run metadata.
    assert minio["AWS_SECRET_ACCESS_KEY"] not in repr(runs["minio"].metadata)
    # The BI endpoint serves the same table from the store, its keys in no log line.
    from stock_lakehouse_tests.test_bi_server import bi_server, query, same_frames

    log = tmp_path / "bi-server.log"
    with bi_server(None, log, lake_root="s3a://lake/t1", **minio) as (port, _):
        got = query(port, "SELECT * FROM bi_stock_daily ORDER BY symbol, trade_date")
    same_frames(got, read_table("s3a://lake/t1", "bi", s3=s3(minio)))
    assert minio["AWS_SECRET_ACCESS_KEY"] not in log.read_text()


WRITER = """
import sys, warnings
warnings.filterwarnings("ignore")
from datetime import date
from stock_lakehouse.runs.materialize import run_materialize
symbol, days = sys.argv[1], sys.argv[2:]
for d in days:
    ok, summary, error = run_materialize([symbol], date.fromisoformat(d), date.fromisoformat(d),
        {"source": "synthetic", "lake_root": "s3a://lake/concurrent"})
    assert ok, error
    print("done", symbol, d, flush=True)
"""


def test_two_processes_writing_one_table_lose_no_commit(spark, minio, tmp_path, clean_env, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())  # pools: one writer per table
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOCK_LAKEHOUSE_") or k == "STOCK_LAKEHOUSE_CONFIG"}
    env |= minio | {"DAGSTER_HOME": str(home)}
    # The tables exist before parallel writers start (empty-path races raise ProtocolChangedException);
    # seeded in this process, whose Spark session is already up.
    monkeypatch.setenv("STOCK_LAKEHOUSE_S3_ENDPOINT", minio["STOCK_LAKEHOUSE_S3_ENDPOINT"])
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    ok, _, error = run_materialize(
        ["AAA"], date(2024, 2, 29), date(2024, 2, 29), {"source": "synthetic", "lake_root": "s3a://lake/concurrent"}
    )
    assert ok, error
    days = ["2024-03-04", "2024-03-05"]  # two runs per process, overlapping in time
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, sym, *days],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for sym in ("AAA", "BBB")
    ]
    for p in procs:
        out, err = p.communicate(timeout=900)
        assert p.returncode == 0, err[-3000:]
        assert out.count("done") == len(days)
    for table, per_day in (("bronze", 960), ("silver", 960), ("gold", 1), ("bi", 1)):
        df = read_table("s3a://lake/concurrent", table, s3=s3(minio))
        got = df.groupby(["symbol", df.trade_date.astype(str)]).size().to_dict()
        expected = {(s, d): per_day for s in ("AAA", "BBB") for d in days} | {("AAA", "2024-02-29"): per_day}
        assert got == expected, table
    # Every run committed once per table: 1 + 2 x len(days) versions, none overwritten.
    from deltalake import DeltaTable

    gold = DeltaTable("s3://lake/concurrent/gold/daily_kpis", storage_options=s3(minio).delta_rs_options())
    assert gold.version() == 2 * len(days) and len(gold.history()) == 2 * len(days) + 1


def test_standalone_cluster_run_on_minio_equals_local(spark, minio, tmp_path, dagster_home, clean_env, monkeypatch):
    from stock_lakehouse_tests.services import spark_standalone

    rec = tmp_path / "rec"
    rec.mkdir()
    (rec / "nvda.json").write_bytes(NVDA_SAMPLE.read_bytes())
    ok, _, error = run_materialize(
        ["NVDA"],
        date(2024, 3, 6),
        date(2024, 3, 8),
        {"source": "replay", "replay_dir": str(rec), "lake_root": str(tmp_path / "local")},
    )
    assert ok, error
    logs = tmp_path / "spark-logs"
    logs.mkdir()
    with spark_standalone(workers=2, log_dir=logs) as master:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith("STOCK_LAKEHOUSE_") or k == "STOCK_LAKEHOUSE_CONFIG"
        }
        env |= minio | {
            "DAGSTER_HOME": str(tmp_path / "home2"),
            "STOCK_LAKEHOUSE_SPARK_MASTER": master,
            "PYSPARK_PYTHON": sys.executable,
        }
        done = subprocess.run(
            [
                str(Path(sys.executable).with_name("stock-lakehouse")),
                "materialize",
                "--symbols",
                "NVDA",
                "--start",
                "2024-03-06",
                "--end",
                "2024-03-08",
                "--source",
                "replay",
                "--replay-dir",
                str(rec),
                "--lake-root",
                "s3a://lake/cluster",
            ],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        app_logs = "".join(p.read_text() for p in logs.glob("spark-master.log"))
        assert "Registered app stock-lakehouse" in app_logs  # the run used the cluster, not local mode
    for table in ("gold", "bi"):
        local = read_table(str(tmp_path / "local"), table)
        remote = read_table("s3a://lake/cluster", table, s3=s3(minio))
        pd.testing.assert_frame_equal(remote, local, check_exact=False, rtol=1e-12)


def _client(env, access_key: str, secret_key: str):
    return s3(env).boto3_client(attempts=1, keys=(access_key, secret_key))


def _denied(call) -> bool:
    from botocore.exceptions import ClientError

    try:
        call()
    except ClientError as exc:
        return exc.response["Error"]["Code"] in ("AccessDenied", "403")
    return False


def test_provision_store_gives_the_application_its_bucket_and_nothing_else(minio, clean_env, monkeypatch):
    """``provision-store`` as compose's one-shot service runs it: root login in MINIO_ROOT_*, the
    application's keys in AWS_*. The application's user then works in the lake's bucket only."""
    import secrets

    from click.testing import CliRunner

    from stock_lakehouse.cli import main
    from stock_lakehouse.lakehouse.lake import Lake
    from stock_lakehouse.lakehouse.store_access import Keys, user_policies

    root = Keys(minio["AWS_ACCESS_KEY_ID"], minio["AWS_SECRET_ACCESS_KEY"])
    app = Keys("pipeline-app", secrets.token_urlsafe(24))
    endpoint = minio["STOCK_LAKEHOUSE_S3_ENDPOINT"]
    env = {
        "STOCK_LAKEHOUSE_LAKE_ROOT": "s3a://scoped-lake/lake",
        "STOCK_LAKEHOUSE_S3_ENDPOINT": endpoint,
        "MINIO_ROOT_USER": root.access_key,
        "MINIO_ROOT_PASSWORD": root.secret_key,
        "AWS_ACCESS_KEY_ID": app.access_key,
        "AWS_SECRET_ACCESS_KEY": app.secret_key,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    outputs = [CliRunner().invoke(main, ["provision-store"]) for _ in range(2)]
    for out in outputs:
        assert out.exit_code == 0, out.output
        for secret in (root.secret_key, app.secret_key, root.access_key, app.access_key):
            assert secret not in out.output
    assert "bucket scoped-lake: created" in outputs[0].output
    assert "bucket scoped-lake: exists" in outputs[1].output  # idempotent: the second start changes nothing
    assert user_policies(S3Location(endpoint=endpoint), root, app.access_key) == ["stock-lakehouse-scoped-lake"]

    admin = _client(minio, root.access_key, root.secret_key)
    admin.create_bucket(Bucket="not-the-lake")
    admin.put_object(Bucket="not-the-lake", Key="private.txt", Body=b"root only")
    user = _client(minio, app.access_key, app.secret_key)
    user.put_object(Bucket="scoped-lake", Key="lake/x/part-0", Body=b"bars")
    assert user.get_object(Bucket="scoped-lake", Key="lake/x/part-0")["Body"].read() == b"bars"
    assert [o["Key"] for o in user.list_objects_v2(Bucket="scoped-lake")["Contents"]] == ["lake/x/part-0"]
    user.delete_object(Bucket="scoped-lake", Key="lake/x/part-0")
    assert Lake(root="s3a://scoped-lake/lake", s3=S3Location(endpoint=endpoint)).probe() is None  # the run's pre-flight
    assert _denied(lambda: user.get_object(Bucket="not-the-lake", Key="private.txt"))
    assert _denied(lambda: user.put_object(Bucket="not-the-lake", Key="planted.txt", Body=b"x"))
    assert _denied(lambda: user.list_objects_v2(Bucket="not-the-lake"))
    assert _denied(lambda: user.delete_bucket(Bucket="scoped-lake"))
    assert _denied(lambda: user.create_bucket(Bucket="another-bucket"))
    assert [b["Name"] for b in user.list_buckets()["Buckets"]] == ["scoped-lake"]


@pytest.mark.parametrize(
    ("lake_root", "app_key", "expected"),
    [
        ("s3a://lake*/x", "pipeline-app", "bucket 'lake*' is not a valid S3 bucket name"),
        ("s3a://Lake/x", "pipeline-app", "bucket 'Lake' is not a valid S3 bucket name"),
        ("s3a://lake/x", "root", "application access key is the admin login's"),
        ("s3a://lake/x", 'a"}],"Resource":"*', "application access key: 3-128 characters"),
    ],
)
def test_provision_store_refuses_hostile_names_before_touching_the_store(
    minio, clean_env, monkeypatch, lake_root, app_key, expected
):
    from click.testing import CliRunner

    from stock_lakehouse.cli import main

    root_key = minio["AWS_ACCESS_KEY_ID"]
    monkeypatch.setenv("STOCK_LAKEHOUSE_LAKE_ROOT", lake_root)
    monkeypatch.setenv("STOCK_LAKEHOUSE_S3_ENDPOINT", minio["STOCK_LAKEHOUSE_S3_ENDPOINT"])
    monkeypatch.setenv("MINIO_ROOT_USER", root_key)
    monkeypatch.setenv("MINIO_ROOT_PASSWORD", minio["AWS_SECRET_ACCESS_KEY"])
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", root_key if app_key == "root" else app_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "app-secret-value-1")
    admin = _client(minio, root_key, minio["AWS_SECRET_ACCESS_KEY"])
    before = {b["Name"] for b in admin.list_buckets()["Buckets"]}
    out = CliRunner().invoke(main, ["provision-store"])
    assert out.exit_code != 0
    first = out.output.strip().splitlines()[0]
    assert expected in first, out.output
    assert "app-secret-value-1" not in out.output and minio["AWS_SECRET_ACCESS_KEY"] not in out.output
    assert {b["Name"] for b in admin.list_buckets()["Buckets"]} == before  # nothing created


def test_the_readmes_bucket_snippet_runs_as_pasted(minio, tmp_path):
    """README's MinIO section: the line creating the bucket, run by bash from the repository (its
    ``.venv/bin/python``) with the environment ``scripts/minio.sh start`` prints. The session's MinIO already
    has bucket ``lake``, so the snippet is given a new bucket name, its only change."""
    import uuid

    (line,) = [ln for ln in (REPO / "README.md").read_text().splitlines() if "create_bucket" in ln]
    snippet = line.split("   #", 1)[0]  # the comment after the command
    assert snippet.startswith(".venv/bin/python -c ") and snippet.count("Bucket='lake'") == 1, snippet
    bucket = f"readme-{uuid.uuid4().hex[:12]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOCK_LAKEHOUSE_")} | minio
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", snippet.replace("Bucket='lake'", f"Bucket='{bucket}'")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    s3(minio).boto3_client(keys=(minio["AWS_ACCESS_KEY_ID"], minio["AWS_SECRET_ACCESS_KEY"])).head_bucket(Bucket=bucket)
