"""Contract of public Wi-Fi access point statistics (topic city.wifi.v1): streets, the zoo,
trams and buses, schools."""

from contracts.districts import DISTRICTS
from contracts.schema import Contract, Field

SITE_TYPES = ("street", "zoo", "tram", "bus", "school")
AP_STATUS = ("up", "degraded", "down")

WIFI = Contract(
    source="wifi",
    topic="city.wifi.v1",
    key="ap_id",
    entity="access point",
    description="Public Wi-Fi access points and their client load.",
    fields=(
        Field("ap_id", "id", "Access point id, e.g. 'ap-zoo-007'; Kafka key"),
        Field("ts", "timestamp", "Event time of the statistics interval end, UTC"),
        Field("site_type", "string", "Where the AP is installed", enum=SITE_TYPES),
        Field("district", "string", "City district of the AP (for vehicles: current)", enum=DISTRICTS),
        Field("connected_clients", "int", "Clients associated at ts", "clients", min=0, max=5000),
        Field("bytes_in", "int", "Bytes received in the interval", "bytes", min=0, max=10**12),
        Field("bytes_out", "int", "Bytes sent in the interval", "bytes", min=0, max=10**12),
        Field("auth_failures", "int", "Failed authentications in the interval", min=0, max=100000),
        Field("latency_ms", "float", "Median uplink latency", "ms", min=0, max=60000),
        Field("status", "string", "AP health", enum=AP_STATUS),
    ),
)
