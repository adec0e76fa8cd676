import compatmatrix.noxsupport as cm

cm.register_cell_sessions("matrix.yaml")
