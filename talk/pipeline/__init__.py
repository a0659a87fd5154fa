"""Lightning-free inference."""
