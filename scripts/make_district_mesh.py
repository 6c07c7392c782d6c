"""Extract the Prague-Bubeneč district from momepy's dataset and write the bundled footprints
(``meshes/bubenec_district.json``) and mesh (``meshes/bubenec_district.msh``).

Run: ``python scripts/make_district_mesh.py [--source PATH]`` (serial, a few seconds). It needs
the optional extra ``gis`` (shapely) and the dataset ``momepy/datasets/bubenec.gpkg``, found in
an installed ``momepy``, or given as the GeoPackage or as momepy's wheel
(``pip download --no-deps momepy``). Users of the bundled files need neither.

What it does, each step stated in the JSON's provenance:

1. reads the ``buildings`` (144 footprints) and ``streets`` (35 centrelines) layers of the
   GeoPackage (SQLite; each geometry is a GeoPackage header followed by WKB, read by shapely);
2. projects them from EPSG:3857 (spherical Web Mercator) to local metres about the district's
   centre: longitude and latitude on the sphere, then an equirectangular plane tangent at the
   centre (the scale error over the 400 m district is below 1e-4);
3. merges footprints closer than ``--close`` m (a morphological closing: passages narrower than
   that are not resolved by a street-level mesh), fills enclosed courtyards (in 2D no wind
   reaches them), drops blocks smaller than ``--min-area`` m², and simplifies each outline
   to ``--simplify`` m (shapely's topology-preserving Douglas–Peucker);
4. meshes the street space with :func:`deepnum_fem.geometry.district_domain` and prints what
   ``meshes/README.md`` records.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sqlite3
import tempfile
import zipfile
from pathlib import Path

from mpi4py import MPI

import numpy as np

import deepnum_fem  # noqa: F401  (dolfinx_solver first)
from deepnum_fem.geometry.district import check_district, district_model
from deepnum_fem.geometry.gmsh_model import gmsh_session, write_msh
from deepnum_fem.io import BUNDLED_DISTRICT, bundled_mesh_path

MERCATOR_RADIUS = 6378137.0      # EPSG:3857's sphere
LOCAL_RADIUS = 6371000.0         # the mean Earth radius of the local plane
DATASET = "momepy/datasets/bubenec.gpkg"


def _dataset(source: Path | None, tmp: Path) -> Path:
    if source is None:
        spec = importlib.util.find_spec("momepy")
        if spec is None or spec.origin is None:
            raise SystemExit("momepy is not installed: pass --source bubenec.gpkg or a momepy wheel "
                             "(pip download --no-deps momepy)")
        return Path(spec.origin).parent / "datasets" / "bubenec.gpkg"
    if source.suffix == ".whl":
        with zipfile.ZipFile(source) as wheel:
            wheel.extract(DATASET, tmp)
        return tmp / DATASET
    return source


def _geometries(path: Path, table: str) -> list:
    """The layer's geometries: a GeoPackage blob is 'GP', version, flags, srs_id, an envelope
    (its size in the flags' bits 1-3), then WKB."""
    import shapely

    envelope_bytes = {0: 0, 1: 32, 2: 48, 3: 48, 4: 64}
    with sqlite3.connect(path) as db:
        rows = db.execute(f'SELECT geom FROM "{table}" ORDER BY fid').fetchall()
    out = []
    for (blob,) in rows:
        if blob[:2] != b"GP":
            raise SystemExit(f"{path}: {table}: not a GeoPackage geometry blob")
        out.append(shapely.from_wkb(bytes(blob[8 + envelope_bytes[(blob[3] >> 1) & 7]:])))
    return out


def _to_metres(geoms, centre_xy):
    import shapely

    lon0 = centre_xy[0] / MERCATOR_RADIUS
    lat0 = 2 * math.atan(math.exp(centre_xy[1] / MERCATOR_RADIUS)) - math.pi / 2

    def project(xy):
        lon = xy[:, 0] / MERCATOR_RADIUS
        lat = 2 * np.arctan(np.exp(xy[:, 1] / MERCATOR_RADIUS)) - np.pi / 2
        return np.column_stack([LOCAL_RADIUS * (lon - lon0) * math.cos(lat0), LOCAL_RADIUS * (lat - lat0)])

    return [shapely.transform(g, project) for g in geoms], (math.degrees(lon0), math.degrees(lat0))


def _ring(polygon) -> list[list[float]]:
    """The exterior, counter-clockwise, unclosed, rounded to 1 cm."""
    import shapely

    ring = shapely.geometry.polygon.orient(polygon, 1.0).exterior.coords[:-1]
    return [[round(x, 2), round(y, 2)] for x, y in ring]


def main() -> None:
    import shapely

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--source", type=Path, default=None, help="bubenec.gpkg or a momepy wheel")
    p.add_argument("--close", type=float, default=2.0, help="merge footprints closer than this, m")
    p.add_argument("--min-area", type=float, default=10.0, help="drop blocks smaller than this, m^2")
    p.add_argument("--simplify", type=float, default=0.5, help="outline tolerance, m")
    for name in ("radius", "h", "h_near"):
        p.add_argument(f"--{name.replace('_', '-')}", type=float, default=BUNDLED_DISTRICT[name], help="m")
    p.add_argument("--out", type=Path, default=bundled_mesh_path("bubenec_district").parent)
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = _dataset(args.source, Path(tmp))
        buildings, streets = _geometries(path, "buildings"), _geometries(path, "streets")
    raw = shapely.union_all(buildings)
    x0, y0, x1, y1 = raw.bounds
    centre = ((x0 + x1) / 2, (y0 + y1) / 2)
    buildings, lonlat = _to_metres(buildings, centre)
    streets, _ = _to_metres(streets, centre)
    half = args.close / 2
    closed = shapely.union_all([b.buffer(half, join_style="mitre") for b in buildings]).buffer(-half,
                                                                                               join_style="mitre")
    # filled courtyards swallow the buildings that stood in them: union again
    filled = shapely.union_all([shapely.Polygon(part.exterior) for part in getattr(closed, "geoms", [closed])])
    blocks = list(getattr(filled, "geoms", [filled]))
    blocks = [b.simplify(args.simplify, preserve_topology=True) for b in blocks if b.area >= args.min_area]
    blocks.sort(key=lambda b: (round(b.centroid.x, 3), round(b.centroid.y, 3)))
    rings = [_ring(b) for b in blocks]
    lines = [[[round(x, 2), round(y, 2)] for x, y in s.simplify(args.simplify).coords] for s in streets]

    record = {
        "name": "Prague-Bubeneč district: building footprints and street centrelines",
        "source": f"momepy {DATASET} (layers buildings, streets), EPSG:3857",
        "licence": "unclear: momepy's code is BSD-3-Clause, but neither the package nor its dataset "
                   "module states the dataset's origin or licence (see meshes/README.md)",
        "projection": f"spherical Web Mercator -> local equirectangular metres about lon {lonlat[0]:.7f}, "
                      f"lat {lonlat[1]:.7f} (x east, y north; mean Earth radius {LOCAL_RADIUS:.0f} m)",
        "processing": {"raw_buildings": len(buildings), "raw_area_m2": round(sum(b.area for b in buildings), 2),
                       "close_m": args.close, "courtyards_filled": sum(len(part.interiors) for part in
                                                                     getattr(closed, "geoms", [closed])),
                       "min_area_m2": args.min_area, "simplify_m": args.simplify,
                       "blocks": len(rings), "block_area_m2": round(sum(b.area for b in blocks), 2),
                       "streets": len(lines), "street_length_m": round(sum(s.length for s in streets), 2)},
        "mesh": {"radius": args.radius, "h": args.h, "h_near": args.h_near},
        "buildings": rings,
        "streets": lines,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = args.out / "bubenec_district.json"
    json_path.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")

    outer, polygons, h_near, grading = check_district([np.array(r) for r in rings], args.radius, args.h,
                                                      args.h_near, None)
    with gmsh_session("district", MPI.COMM_SELF) as gmsh:
        district_model(gmsh, outer, polygons, args.h, h_near, grading)
        info = write_msh(gmsh, args.out / "bubenec_district.msh")
        print(f"wrote {json_path} ({json_path.stat().st_size / 1e6:.2f} MB): {record['processing']}")
        print(f"wrote {args.out / 'bubenec_district.msh'}: gmsh {gmsh.__version__}, radius {args.radius} m, "
              f"h = {args.h} m, h_near = {h_near} m, {info['vertices']} vertices, {info['counts']} elements, "
              f"{'binary' if info['binary'] else 'ASCII'}, {info['megabytes']:.2f} MB")


if __name__ == "__main__":
    main()
