"""Face models behind one interface: FLAME, the procedural FLAME-format head."""
