"""The procedural FLAME-format head (mesh, rig, geometry)."""
