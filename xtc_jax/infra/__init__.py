"""Infrastructure every method shares: checkpoints, exports, the workdir, mesh, writers, processes.

Nothing here imports a method (training/, consistency/, energy/, apps/).
"""
