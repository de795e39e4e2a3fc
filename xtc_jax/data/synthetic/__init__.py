"""The built-in synthetic Taskonomy: procedural rooms ray-cast to every domain (`generate.py`).

- `scene`: samples a building (one room, furniture, small objects, windows,
  materials) and fixated cameras; camera <-> Blender Euler conventions.
- `raycast`: vectorised NumPy ray casting of a whole image at once.
- `annotate`: turns the ray hits into every Taskonomy domain's on-disk array.
- `generate`: buildings, views and the split file on disk;
  `python -m xtc_jax.data.synthetic` is its command line.
- `flythrough`: a smooth camera path through one room with every frame's ground
  truth (`python -m xtc_jax.data.synthetic.flythrough`), for the video tool.

World frame (metres): z up, the floor is z = 0, the room spans
[0, Lx] x [0, Ly] x [0, H]. Camera frame: x right, y down, z forward (OpenCV).
"""
