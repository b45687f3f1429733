"""Stream workers: the Faust app, batch ingest, windows, detectors, the Parquet sink and the embedded broker."""
