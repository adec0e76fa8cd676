"""`compatmatrix doctor`: the diagnosis of an installed environment."""
