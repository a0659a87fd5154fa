"""The FaceFormer-style regressor."""
