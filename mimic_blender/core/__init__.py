"""The add-on's bpy-free core: the backend client and its session, the worker thread, settings
and job data, `compute` (inputs -> backend -> outputs), scene arithmetic, sound and style-file
reading, and backend setup. Nothing here imports bpy, so all of it runs and tests in plain
Python; the Blender layer (the package above) imports down into it, never the other way."""
