"""What the UI shows of each table asset: its layer as the group, and the column schema enforced on write."""

from stock_lakehouse.assets import LARGE_SELECTIONS, keys, show_command
from stock_lakehouse.cli import main
from stock_lakehouse.lakehouse import schemas
from stock_lakehouse.settings import load_settings
from stock_lakehouse.wiring import build_definitions


def test_assets_are_grouped_by_layer_and_carry_their_column_schema(clean_env):
    defs = build_definitions(load_settings())
    expected = {
        keys.BRONZE: ("bronze", schemas.BRONZE),
        keys.SILVER: ("silver", schemas.SILVER),
        keys.GOLD: ("gold", schemas.GOLD),
        keys.BI: ("gold", schemas.BI),
        keys.SIGNALS: ("gold", schemas.SIGNALS),
    }
    by_key = {a.key: a for a in defs.assets}
    for key, (group, schema) in expected.items():
        asset = by_key[key]
        assert asset.group_names_by_key[key] == group
        columns = asset.metadata_by_key[key]["dagster/column_schema"].columns
        assert [(c.name, c.type, c.constraints.nullable) for c in columns] == [
            (f.name, f.dataType.simpleString(), f.nullable) for f in schema.fields
        ]


def test_each_asset_description_ends_with_a_show_command_the_cli_accepts(clean_env):
    defs = build_definitions(load_settings())
    show = main.commands["show"]
    tables = set()
    for asset in defs.assets:
        for key in asset.keys:
            description = asset.descriptions_by_key[key]
            assert description.endswith(show_command(key)), description
            assert LARGE_SELECTIONS in description and defs.resolve_job_def("ranged_backfill") is not None
            command = description.rsplit("`", 2)[-2].split()
            assert command[:2] == ["stock-lakehouse", "show"]
            ctx = show.make_context("show", command[2:])  # raises on an unknown table or option
            tables.add(ctx.params["table"])
    assert tables == {"bronze", "silver", "gold", "bi", "signals"}
