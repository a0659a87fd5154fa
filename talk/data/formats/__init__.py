"""Dataset formats, read exactly as published."""
