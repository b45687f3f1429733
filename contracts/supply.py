"""Contract of the utility's supply networks (topic city.supply.v1): power feeders, water
network points and district-heating substations, one asset type per record.

One declaration, not three, on purpose: the operator sends one topic keyed by asset id, every
asset reports on the same 15-minute metering grid and belongs to a district, and the reports
want the three networks side by side per district. One contract keeps one topic, one window
geometry (CITYFLOW_WINDOW_SUPPLY), one raw table and one set of views; three would triple the
topics (and every test's partitions) for nothing a column cannot say. The price: each asset
type fills its own measurements and leaves the others null, so those fields are nullable, and
the contract does not force a feeder to send a load (the rule table tests one column at a
time). Aggregates ignore nulls, so each window holds only its asset type's figures.
"""

from contracts.districts import DISTRICTS
from contracts.schema import Contract, Field

ASSET_TYPES = ("feeder", "water", "heat")

SUPPLY = Contract(
    source="supply",
    topic="city.supply.v1",
    key="asset_id",
    entity="asset",
    description="Supply networks: low-voltage feeders of secondary substations (power), water network "
                "metering points, district-heating house substations; one report per minute.",
    fields=(
        Field("asset_id", "id", "Meter or asset id, e.g. 'feeder-0012', 'water-0003', 'heat-0040'; Kafka key"),
        Field("ts", "timestamp", "Event time of the meter reading, UTC"),
        Field("district", "string", "City district of the asset", enum=DISTRICTS),
        Field("asset_type", "string", "Network of the asset: power feeder, water point, heating substation",
              enum=ASSET_TYPES),
        # power feeders (0.4 kV side of a secondary substation, up to a 630 kVA transformer)
        Field("load_kw", "float", "Feeder active power (feeders only)", "kW", nullable=True, min=0, max=2000),
        Field("voltage_v", "float", "Phase-to-neutral voltage, nominal 230 V; 0 when the feeder is dead "
              "(feeders only)", "V", nullable=True, min=0, max=300),
        Field("frequency_hz", "float", "Grid frequency, nominal 50 Hz; null when the feeder is dead "
              "(feeders only)", "Hz", nullable=True, min=45, max=55),
        # water network metering points (district meter areas)
        Field("water_flow_m3h", "float", "Flow into the district meter area (water points only)", "m³/h",
              nullable=True, min=0, max=5000),
        Field("pressure_bar", "float", "Network pressure at the point (water points only)", "bar",
              nullable=True, min=0, max=16),
        # district-heating house substations
        Field("supply_temp_c", "float", "Primary supply (flow) temperature (heating only)", "°C",
              nullable=True, min=0, max=150),
        Field("return_temp_c", "float", "Primary return temperature (heating only)", "°C",
              nullable=True, min=0, max=150),
        Field("heat_flow_m3h", "float", "Primary water flow through the substation (heating only)", "m³/h",
              nullable=True, min=0, max=500),
        Field("heat_kw", "float", "Heat delivered (heating only)", "kW", nullable=True, min=0, max=20000),
    ),
)
