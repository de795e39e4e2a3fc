"""Procedural ray-cast renderer behind `xtc_jax.data.synthetic`.

- `scene`: samples a building (one room, furniture, small objects, windows,
  materials) and fixated cameras; camera <-> Blender Euler conventions.
- `raycast`: vectorised NumPy ray casting of a whole image at once.
- `annotate`: turns the ray hits into every Taskonomy domain's on-disk array.

World frame (metres): z up, the floor is z = 0, the room spans
[0, Lx] x [0, Ly] x [0, H]. Camera frame: x right, y down, z forward (OpenCV).
"""
