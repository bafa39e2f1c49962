"""Data quality: SodaCL rules (one YAML per table) run by Soda Core as Dagster asset checks."""
