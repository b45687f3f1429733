"""Contract of traffic detector readings (topic city.traffic.v1): one row per detector and lane
per reporting interval.

Version 2 added `road_temp_c` (detectors with a road-weather sensor, for the winter service).
Version 1 detectors keep sending records without it; both land in the same raw table, the
field null for v1 records (see contracts/versions.py for the evolution rules).

Version 3: "no vehicles, no speed". An interval without vehicles has no mean speed; v1/v2
producers report 0.0 km/h for it, which reads exactly like a standstill jam and pulled the
night's window mean speed down (minor roads: ~17 km/h at 02:00 against ~29 km/h at the 08:00
peak). `avg_speed_kmh` became nullable (a relaxation: every record valid before still is),
v3 producers send null for an empty interval, and for every version a speed sent with
`vehicle_count` 0 lands as null (`null_when_zero`): accepted, not rejected, because the count
and occupancy of such a record are real data. Version 3 also added `travel_time_s` for
segment travel-time sensors (e.g. NAB's TravelTime series).

Version 4: `occupancy_pct` became nullable (a relaxation, like v3's speed). Only induction
loops measure occupancy; a radar speed sensor or a segment travel-time sensor has none, and
before v4 such a producer had to invent a value. An invented constant is worse than a null:
the congestion detector requires every signal a window has to agree, so a flat 10 % vetoed
every real speed drop (NAB's speed and travel-time series found 0 of 7 labelled windows
through the worker), and the window's mean occupancy was a made-up figure. A null occupancy
is absent from the window mean (null for a window without any) and from the detectors.
"""

from contracts.districts import DISTRICTS
from contracts.schema import Contract, Field

TRAFFIC = Contract(
    source="traffic",
    topic="city.traffic.v1",
    key="detector_id",
    entity="detector",
    description="Induction-loop and radar traffic detectors on Duisburg's roads.",
    version=4,
    fields=(
        Field("detector_id", "id", "Detector id, e.g. 'tdet-0042'; Kafka key"),
        Field("ts", "timestamp", "Event time of the reading (end of the count interval), UTC"),
        Field("district", "string", "City district the detector stands in", enum=DISTRICTS),
        Field("road", "string", "Road name", min=1, max=80),
        Field("lane", "int", "Lane number, 1 = rightmost", min=1, max=8),
        Field("vehicle_count", "int", "Vehicles counted in the interval", "vehicles", min=0, max=500),
        Field("avg_speed_kmh", "float", "Mean speed of counted vehicles; null when vehicle_count is 0 "
              "(no vehicles, no speed: a speed sent with no vehicles, e.g. a v1/v2 producer's 0.0, "
              "lands as null)", "km/h", nullable=True, min=0, max=250, null_when_zero="vehicle_count"),
        Field("occupancy_pct", "float", "Share of time the loop was occupied; null for sensors that "
              "measure no occupancy (radar speed, segment travel time; nullable since v4)", "%",
              nullable=True, min=0, max=100),
        Field("road_temp_c", "float", "Road-surface temperature (detectors with a road-weather "
              "sensor; null for v1 detectors)", "°C", nullable=True, min=-40, max=80, since_version=2),
        Field("travel_time_s", "float", "Travel time over the detector's road segment (segment "
              "travel-time sensors; null for loop detectors and v1/v2 producers)", "s",
              nullable=True, min=0, max=86_400, since_version=3),
    ),
)
