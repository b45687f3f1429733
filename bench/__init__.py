"""The benchmark harness of issue #8 (`make bench`, `python -m bench`): cityflow against the raw
client ceiling and the naive and take()-batched Faust agents, plus latency, warehouse and soak."""
