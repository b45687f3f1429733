"""Contract of smart street-lamp telemetry (topic city.lighting.v1)."""

from contracts.districts import DISTRICTS
from contracts.schema import Contract, Field

LAMP_STATUS = ("on", "off", "dimmed", "fault")

LIGHTING = Contract(
    source="lighting",
    topic="city.lighting.v1",
    key="lamp_id",
    entity="lamp",
    description="Networked LED street lamps reporting state and power draw.",
    fields=(
        Field("lamp_id", "id", "Lamp id, e.g. 'lamp-01234'; Kafka key"),
        Field("ts", "timestamp", "Event time of the report, UTC"),
        Field("district", "string", "City district of the lamp", enum=DISTRICTS),
        Field("status", "string", "Operating state", enum=LAMP_STATUS),
        Field("dim_level_pct", "float", "Dimming level, 0 = dark, 100 = full", "%", min=0, max=100),
        Field("power_w", "float", "Electrical power drawn", "W", min=0, max=1000),
        Field("ambient_lux", "float", "Ambient light at the lamp's sensor", "lx", min=0, max=150000),
        Field("fault_code", "string", "Vendor fault code when status is 'fault'", nullable=True,
              min=1, max=32),
    ),
)
