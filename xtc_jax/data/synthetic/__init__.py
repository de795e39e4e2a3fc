"""The built-in synthetic Taskonomy: procedural rooms ray-cast to every domain (`generate.py`).

- `scene`: samples a building (one room, furniture, small objects, windows,
  materials) and fixated cameras; camera <-> Blender Euler conventions.
- `raycast`: vectorised NumPy ray casting of a whole image at once.
- `annotate`: turns the ray hits into every Taskonomy domain's on-disk array.
- `generate`: buildings, views and the split file on disk;
  `python -m xtc_jax.data.synthetic` is its command line.

World frame (metres): z up, the floor is z = 0, the room spans
[0, Lx] x [0, Ly] x [0, H]. Camera frame: x right, y down, z forward (OpenCV).
"""
