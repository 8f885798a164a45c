"""Any character: Mimic's motion on the animator's own head mesh and on its own shape keys."""
