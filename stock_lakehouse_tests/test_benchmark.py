"""The benchmark's small variant: it runs end to end and its results are consistent (never timings)."""

from datetime import date

import pytest

from stock_lakehouse.benchmarks.runner import run

pytestmark = pytest.mark.spark


def test_small_benchmark_runs_and_agrees_with_the_bare_script(spark, tmp_path, monkeypatch):
    monkeypatch.delenv("STOCK_LAKEHOUSE_CONFIG", raising=False)
    res = run(
        [1, 2],
        date(2024, 3, 4),
        date(2024, 3, 5),
        tmp_path / "out",
        ui_ways=(),
        per_partition=0,
        workdir=tmp_path / "w",
    )
    assert [s["symbols"] for s in res["sizes"]] == [1, 2]
    for size in res["sizes"]:
        # The pipeline's gold equals the bare script's (checked inside run); here: counts and runs.
        assert size["bars"] == size["symbols"] * 2 * 960
        assert size["cli"]["runs"] == 1
        assert size["cli"]["layers"]["gold"]["rows"] == size["symbols"] * 2
        assert size["cli"]["checks_not_passed"] == []
        assert size["bare_s"] > 0 and size["ratio_cli_to_bare"] > 0
        # The run's time split from its event log: one run, in this process's JVM, every table's Soda scan.
        costs = size["cli"]["run_costs"]
        assert costs["runs"] == 1 and costs["jvms_started"] == 0 and costs["events"] > 0
        assert len(costs["per_run"][0]["soda_scan_s"]) == 5 and 0 < costs["soda_scan_s"] < costs["execution_s"]
    assert res["intraday_refresh"]["bars"] == 200 and res["intraday_refresh"]["runs"] == 1
    # The BI endpoint served the 2-symbol lake: the query's rows are its first symbol's 2 days.
    bi = res["bi_query"]
    assert bi["rows"] == 2 and "symbol = 'S000'" in bi["query"], bi
    assert 0 < bi["warm_min_s"] <= bi["warm_median_s"] <= bi["warm_max_s"] and bi["start_s"] > 0
    report = (tmp_path / "out" / "results.md").read_text()
    assert "| symbols | partitions | bars |" in report and "Intraday refresh" in report
    assert "| CLI, 2 symbols | 1 | 0 |" in report and "BI endpoint (bi-server)" in report
    assert (tmp_path / "out" / "results.json").is_file()
