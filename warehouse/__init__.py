"""The warehouse: DuckDB views and models over the Parquet lake, and the query API."""
