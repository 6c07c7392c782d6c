"""Meshes from gmsh: generators for the demos, built on rank 0 and distributed.

One submodule per subject; the generators and their tags are re-exported here
(``dnf.geometry.left_ventricle``, ``from deepnum_fem.geometry import COAST_TAGS``):

* :mod:`~deepnum_fem.geometry.gmsh_model`: gmsh plumbing (the gmsh module, a rank-0 model
  session, uniform and graded mesh sizes, :func:`write_msh`, :func:`from_gmsh_model`);
* :mod:`~deepnum_fem.geometry.shapes`: :func:`plate_with_holes`, :func:`box_with_cavity`,
  :func:`channel_with_cylinder` (the DFG benchmark's channel);
* :mod:`~deepnum_fem.geometry.heart`: the Land et al. left ventricle (``LV_*``,
  :func:`left_ventricle`, :func:`left_ventricle_volume`);
* :mod:`~deepnum_fem.geometry.biventricular`: an idealised biventricular heart on that ventricle
  (``BIV_*``, :func:`biventricle`, :func:`biventricle_volume`, :func:`inside_biventricle`);
* :mod:`~deepnum_fem.geometry.city`: the city blocks (``CITY_*``, :func:`city_blocks`,
  :func:`city_blocks_3d`);
* :mod:`~deepnum_fem.geometry.district`: a real district's footprints in a circular domain
  (``DISTRICT_*``, :func:`district_domain`, :func:`wind_boundaries`);
* :mod:`~deepnum_fem.geometry.district3d`: the air over that district, its buildings extruded
  (:data:`DISTRICT_TAGS_3D`, :data:`DISTRICT_BUILDING_HEIGHT`, :func:`district_domain_3d`);
* :mod:`~deepnum_fem.geometry.coast`: coastal seas (``COAST_*``, ``BAY_*``,
  :data:`EARTH_RADIUS`, :func:`lonlat_to_xy`, :func:`coastal_domain`);
* :mod:`~deepnum_fem.geometry.polygons`: the polygon maths the coast validates with.

Each submodule's own model builders and argument checks (``left_ventricle_model``,
``biventricle_model``, ``check_city``, ...) are public there for the bundled-mesh scripts, not re-exported here.
"""

from deepnum_fem.geometry.biventricular import (
    BIV_CELL_TAGS,
    BIV_DIMENSIONS,
    BIV_TAGS,
    biventricle,
    biventricle_volume,
    inside_biventricle,
)
from deepnum_fem.geometry.city import (
    CITY_BUILDING_HEIGHTS,
    CITY_BUILDINGS,
    CITY_CELL_TAGS,
    CITY_TAGS,
    CITY_TAGS_3D,
    city_blocks,
    city_blocks_3d,
)
from deepnum_fem.geometry.coast import (
    BAY_COASTLINE,
    BAY_ISLANDS,
    BAY_OPEN_SEA,
    COAST_CELL_TAGS,
    COAST_TAGS,
    EARTH_RADIUS,
    coastal_domain,
    lonlat_to_xy,
)
from deepnum_fem.geometry.district import DISTRICT_CELL_TAGS, DISTRICT_TAGS, WIND_TAGS, district_domain, wind_boundaries
from deepnum_fem.geometry.district3d import DISTRICT_BUILDING_HEIGHT, DISTRICT_TAGS_3D, district_domain_3d
from deepnum_fem.geometry.gmsh_model import from_gmsh_model, write_msh
from deepnum_fem.geometry.heart import LV_CELL_TAGS, LV_DIMENSIONS, LV_TAGS, left_ventricle, left_ventricle_volume
from deepnum_fem.geometry.shapes import CHANNEL_TAGS, box_with_cavity, channel_with_cylinder, plate_with_holes

__all__ = [
    "BAY_COASTLINE",
    "BAY_ISLANDS",
    "BAY_OPEN_SEA",
    "BIV_CELL_TAGS",
    "BIV_DIMENSIONS",
    "BIV_TAGS",
    "CHANNEL_TAGS",
    "CITY_BUILDINGS",
    "CITY_BUILDING_HEIGHTS",
    "CITY_CELL_TAGS",
    "CITY_TAGS",
    "CITY_TAGS_3D",
    "COAST_CELL_TAGS",
    "COAST_TAGS",
    "DISTRICT_BUILDING_HEIGHT",
    "DISTRICT_CELL_TAGS",
    "DISTRICT_TAGS",
    "DISTRICT_TAGS_3D",
    "EARTH_RADIUS",
    "LV_CELL_TAGS",
    "LV_DIMENSIONS",
    "LV_TAGS",
    "WIND_TAGS",
    "biventricle",
    "biventricle_volume",
    "box_with_cavity",
    "channel_with_cylinder",
    "city_blocks",
    "city_blocks_3d",
    "coastal_domain",
    "district_domain",
    "district_domain_3d",
    "from_gmsh_model",
    "inside_biventricle",
    "left_ventricle",
    "left_ventricle_volume",
    "lonlat_to_xy",
    "plate_with_holes",
    "wind_boundaries",
    "write_msh",
]
