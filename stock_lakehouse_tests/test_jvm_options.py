"""The tests' JVMs map Spark's and Delta's classes from the class data archive (jvm_options): if a change
(a ``SPARK_CONF_DIR`` with files in it, another class path) stops the archive from applying, every JVM of
the suite silently loads its classes from the jars again; this test turns red instead."""

import subprocess
import sys

import pytest

from stock_lakehouse_tests import jvm_options
from stock_lakehouse_tests.conftest import ARCHIVE, environment_without_settings

pytestmark = pytest.mark.spark

SESSION = """
import sys
from stock_lakehouse.lakehouse.spark import SparkResource
spark = SparkResource().get_session()
spark.range(3).write.format("delta").save(sys.argv[1])
"""


def test_a_test_jvm_maps_spark_and_delta_classes_from_the_archive(tmp_path):
    assert ARCHIVE is not None
    jvm_options.ensure_archive(ARCHIVE, wait=True)  # another test process may be writing it
    assert ARCHIVE.is_file(), ARCHIVE
    log = tmp_path / "classes.log"
    opts = f"{jvm_options.submit_opts(ARCHIVE)} -Xlog:class+load=info:file={log}"
    done = subprocess.run(
        [sys.executable, "-c", SESSION, str(tmp_path / "t")],
        env=environment_without_settings(SPARK_SUBMIT_OPTS=opts),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = log.read_text().splitlines()
    archived = [line for line in loaded if "source: shared objects file (top)" in line]
    from_jars = [line for line in loaded if "org.apache.spark." in line and "source: file:" in line]
    assert any(" org.apache.spark.sql.delta." in line for line in archived), loaded[-20:]
    # Most of Spark's classes come from the archive (here: about 9 in 10; without it, none).
    spark_archived = [line for line in archived if " org.apache.spark." in line]
    assert len(spark_archived) > 4 * len(from_jars), (len(spark_archived), len(from_jars))
