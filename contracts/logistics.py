"""Contract of logistics vehicle positions around the inland port (topic city.logistics.v1)."""

from contracts.districts import LAT_MAX, LAT_MIN, LON_MAX, LON_MIN
from contracts.schema import Contract, Field

VEHICLE_STATUS = ("moving", "idle", "loading", "unloading")

LOGISTICS = Contract(
    source="logistics",
    topic="city.logistics.v1",
    key="vehicle_id",
    entity="vehicle",
    description="Trucks and container carriers reporting position, state and cargo temperature.",
    district_field=None,
    fields=(
        Field("vehicle_id", "id", "Vehicle id, e.g. 'truck-0099'; Kafka key"),
        Field("ts", "timestamp", "Event time of the position fix, UTC"),
        Field("lat", "float", "Latitude (WGS84), inside Duisburg", "deg", min=LAT_MIN, max=LAT_MAX),
        Field("lon", "float", "Longitude (WGS84), inside Duisburg", "deg", min=LON_MIN, max=LON_MAX),
        Field("speed_kmh", "float", "Ground speed", "km/h", min=0, max=130),
        Field("status", "string", "Vehicle state", enum=VEHICLE_STATUS),
        Field("cargo_temp_c", "float", "Cargo temperature, reefers only", "°C", nullable=True,
              min=-40, max=60),
        Field("eta_minutes", "float", "Minutes to the next stop", "min", min=0, max=2880),
    ),
)
