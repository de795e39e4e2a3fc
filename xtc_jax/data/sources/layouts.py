"""Where a (building, domain, point, view) file lives in each Taskonomy tree layout.

Readers never rebuild file names from these templates (they index whatever
`point_*_view_*_domain_*` files exist, taskonomy.md §1.1); the templates are
for writers: the synthetic generator, and tests that build trees.

Layouts (taskonomy.md §1.2):
  plain     {root}/{building}/{domain}/point_P_view_V_domain_T.ext  (B: 2018 code)
  xtc       {root}/{building}_{domain}/{domain}/point_...  (D: extracted per-building tarballs)
  omnidata  {root}/{domain}/taskonomy/{building}/point_...  (C: omnitools.download)
  by_domain {root}/{domain}/{building}/point_...  (E: old omnidata loader, repacks)
"""

from __future__ import annotations

from pathlib import PurePosixPath

from xtc_jax import domains as domains_lib

LAYOUTS = ("plain", "xtc", "omnidata", "by_domain")


def file_name(domain: str, point: int, view: int | str, ext: str = "png") -> str:
    """`point_{P}_view_{V}_domain_{token}.{ext}`, with the domain's real file token."""
    spec = domains_lib.DOMAINS.get(domain)
    token = (spec.file_token if spec else None) or domain  # edge_texture: Taskonomy's token
    return f"point_{point}_view_{view}_domain_{token}.{ext}"


def domain_dir(layout: str, building: str, domain: str) -> PurePosixPath:
    """The folder (relative to the root) holding `domain` files of `building`."""
    if layout == "plain":
        return PurePosixPath(building, domain)
    if layout == "xtc":
        return PurePosixPath(f"{building}_{domain}", domain)
    if layout == "omnidata":
        return PurePosixPath(domain, "taskonomy", building)
    if layout == "by_domain":
        return PurePosixPath(domain, building)
    raise ValueError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")


def relative_path(
    layout: str, building: str, domain: str, point: int, view: int | str, ext: str = "png"
) -> PurePosixPath:
    return domain_dir(layout, building, domain) / file_name(domain, point, view, ext)
