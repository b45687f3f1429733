"""Duisburg's seven city districts (Stadtbezirke), the city's bounding box, and the district of a
position (for records that carry a position but no district)."""

import numpy as np

DISTRICTS: tuple[str, ...] = (
    "Walsum",
    "Hamborn",
    "Meiderich/Beeck",
    "Homberg/Ruhrort/Baerl",
    "Mitte",
    "Rheinhausen",
    "Süd",
)

# WGS84 bounding box of Duisburg (with a small margin for the port and motorway ramps).
LAT_MIN, LAT_MAX = 51.33, 51.57
LON_MIN, LON_MAX = 6.62, 6.84

# Approximate centres (WGS84 lat, lon) of the seven districts. Records that carry a position
# but no district (logistics fixes) are placed in the district whose centre is nearest
# (`district_of`): a Voronoi approximation of the real boundaries, good to about a kilometre
# near a border, which is what corroborating a district's congestion needs. Checked against the
# port hubs the simulator uses (Ruhrort harbour -> Homberg/Ruhrort/Baerl, logport I ->
# Rheinhausen, Hochfeld and Kaiserberg -> Mitte, Hüttenheim -> Süd, Walsum -> Walsum, Essenberg
# -> Homberg/Ruhrort/Baerl). Replace with polygons if a boundary ever matters more.
DISTRICT_CENTRES: dict[str, tuple[float, float]] = {
    "Walsum": (51.530, 6.720),
    "Hamborn": (51.495, 6.765),
    "Meiderich/Beeck": (51.468, 6.785),
    "Homberg/Ruhrort/Baerl": (51.462, 6.715),
    "Mitte": (51.430, 6.775),
    "Rheinhausen": (51.395, 6.705),
    "Süd": (51.360, 6.760),
}
_KM_PER_DEG_LON = 0.624  # cos(51.43°): a degree of longitude here is 0.624 of a degree of latitude


def district_of(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """The district of each position (numpy arrays of degrees; NaN positions give None):
    the nearest district centre. Vectorised.

        >>> district_of(np.array([51.455]), np.array([6.735])).tolist()
        ['Homberg/Ruhrort/Baerl']
    """
    lat = np.asarray(lat, dtype=np.float64)
    lon = np.asarray(lon, dtype=np.float64)
    centres = np.array(list(DISTRICT_CENTRES.values()))
    d2 = (lat[:, None] - centres[None, :, 0]) ** 2 + ((lon[:, None] - centres[None, :, 1]) * _KM_PER_DEG_LON) ** 2
    names = np.array(list(DISTRICT_CENTRES), dtype=object)
    out = names[np.argmin(d2, axis=1)] if len(lat) else np.empty(0, dtype=object)
    out[~(np.isfinite(lat) & np.isfinite(lon))] = None
    return out
