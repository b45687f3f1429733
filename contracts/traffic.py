"""Contract of traffic detector readings (topic city.traffic.v1): one row per detector and lane
per reporting interval.

Version 2 added `road_temp_c` (detectors with a road-weather sensor, for the winter service).
Version 1 detectors keep sending records without it; both land in the same raw table, the
field null for v1 records (see contracts/versions.py for the evolution rules).
"""

from contracts.districts import DISTRICTS
from contracts.schema import Contract, Field

TRAFFIC = Contract(
    source="traffic",
    topic="city.traffic.v1",
    key="detector_id",
    entity="detector",
    description="Induction-loop and radar traffic detectors on Duisburg's roads.",
    version=2,
    fields=(
        Field("detector_id", "id", "Detector id, e.g. 'tdet-0042'; Kafka key"),
        Field("ts", "timestamp", "Event time of the reading (end of the count interval), UTC"),
        Field("district", "string", "City district the detector stands in", enum=DISTRICTS),
        Field("road", "string", "Road name", min=1, max=80),
        Field("lane", "int", "Lane number, 1 = rightmost", min=1, max=8),
        Field("vehicle_count", "int", "Vehicles counted in the interval", "vehicles", min=0, max=500),
        Field("avg_speed_kmh", "float", "Mean speed of counted vehicles", "km/h", min=0, max=250),
        Field("occupancy_pct", "float", "Share of time the loop was occupied", "%", min=0, max=100),
        Field("road_temp_c", "float", "Road-surface temperature (detectors with a road-weather "
              "sensor; null for v1 detectors)", "°C", nullable=True, min=-40, max=80, since_version=2),
    ),
)
