"""Duisburg's seven city districts (Stadtbezirke) and the city's bounding box."""

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
