"""Before a run: the memory each rank needs for a setting and its alternatives (``flanforge plan``, and the
train pre-flight when ``launch.gpu_memory`` is set), from the model's shape on the meta device."""
