"""Spark session, Delta IO manager, table schemas and the pure transformations between layers."""
